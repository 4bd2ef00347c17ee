// Toy model of superposition: G ground-truth unit directions in d dimensions; feature i fires
// with probability p_i (geometrically decaying, scaled so about avg_active fire per sample;
// optionally correlated within a batch); magnitudes uniform in [mag_min, mag_max];
// x = sum of firing features' magnitude * direction. The ground truth lets MMCS score an SAE.
#ifndef CTERP_TOY_H
#define CTERP_TOY_H

#include <stdint.h>

#include "cterp/error.h"
#include "cterp/source.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int n_features;     // G (512)
    int d;              // d (128)
    double avg_active;  // expected firing features per sample (5)
    double decay;       // p_i proportional to decay^i (0.99)
    double correlation; // 0: independent; >0: per-batch log-normal co-modulation of p (low rank)
    float mag_min, mag_max; // magnitudes uniform in [mag_min, mag_max] (0, 1)
    uint64_t seed;      // features and stream
} cterp_toy_config;

void cterp_toy_config_default(cterp_toy_config *c);

typedef struct cterp_toy cterp_toy;

cterp_status cterp_toy_create(cterp_toy **out, const cterp_toy_config *c);
void cterp_toy_free(cterp_toy *t);
const float *cterp_toy_features(const cterp_toy *t); // (G, d), unit rows
const double *cterp_toy_probs(const cterp_toy *t);   // (G) base firing probabilities
// Draws batch number `batch` of the stream (deterministic in (seed, batch)): x (B, d).
// If coef is not NULL it receives the ground-truth coefficients (B, G), dense.
void cterp_toy_sample(const cterp_toy *t, uint64_t batch, float *x, int64_t B, float *coef);
// An activation source over the toy's stream (the source keeps a batch counter).
cterp_status cterp_toy_source(cterp_act_source *s, const cterp_toy *t);

// Mean max cosine similarity: mean over the G true features of the best cosine to any of the N
// rows of W (N, d) ("recovery"); *reverse (if not NULL): mean over the rows with nonzero norm of
// their best cos to a true feature ("precision"). Rows need not be normalised.
double cterp_mmcs(const float *features, int G, const float *W, int64_t N, int d, double *reverse);

#ifdef __cplusplus
}
#endif
#endif
