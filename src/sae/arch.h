// Training forward and backward of the four architectures over a batch, sparse after the
// encoder GEMM: selection produces the active (token, latent) pairs; decode and backward touch
// only those. The backward is grouped by latent (counting sort, CSR): deterministic, no atomics.
//
// Loss (SAELens v6 conventions, x already scaled):
//   mse      = mean_B ||x_hat - x||^2
//   standard + coef * mean_B sum_i f_i ||W_dec_i||       (L1 weighted by decoder norm)
//   jumprelu + coef * mean_B #{i : z_i > theta_i}         (L0, straight-through estimator)
//   topk, batchtopk: no penalty (AuxK / ghost grads are added by src/train/revive.c)
//   matryoshka_batchtopk: batchtopk's pairs; + sum over the inner prefix widths m (widths but the
//            last, which is d_sae) of mean_B ||b_dec + sum_{active i < m} z_i W_dec_i - x||^2
//            (aux_loss): each prefix decoded from the same active set (SAELens v6)
//   gated    pairs where pi = xc W_enc^T + b_gate > 0, a = ReLU(exp(r_mag) (pi - b_gate) + b_mag);
//            + coef * mean_B sum_i ReLU(pi_i) ||W_dec_i|| (sparsity_loss)
//            + mean_B ||ReLU(pi) W_dec + b_dec - x||^2 (aux_loss; SAELens does not detach W_dec
//            and b_dec there, the paper does: arch_opts.detach_aux_dec)
#ifndef CTERP_SAE_ARCH_H
#define CTERP_SAE_ARCH_H

#include <stdint.h>

#include "cterp/error.h"
#include "cterp/sae.h"

typedef struct {
    cterp_arch arch;
    int k;              // topk: per token; batchtopk: mean per token (k * B kept per batch)
    int rescale;        // topk/batchtopk: rank by z_i * ||W_dec_i||
    float coef;         // sparsity coefficient (after warm-up)
    float bandwidth;    // jumprelu STE width epsilon
    // optional: latents (ascending) whose pre-activations the forward also gives in w->zsub
    // (B, n_sub) (the dead latents, for AuxK / ghost grads): copied while each row of z is in
    // cache, or under bf16 computed in f32 by an SGEMM over their W_enc rows
    const int32_t *sub;
    int64_t n_sub;
    int bf16;           // topk/batchtopk: choose on the bf16 encoder GEMM (sae/bf16.h), then
                        // recompute the chosen pairs' z in f32 (pairs whose f32 z is <= 0 drop)
    int bf16_fuse;      // topk under bf16: 0 the GEMM fused with the top-k where it pays
                        // (arch_bf16_fuses), 1 always (tests, benchmarks), -1 never
    // matryoshka_batchtopk: the prefix widths, strictly increasing, the last = N (the full SAE)
    const int64_t *widths;
    int n_widths;
    // transcoders: (B, DO) what x_hat reconstructs (the forward's x is then only the input); NULL:
    // x itself (every other architecture)
    const float *target;
    int detach_aux_dec; // gated: the gate's reconstruction sends no gradient to W_dec and b_dec
} arch_opts;

// Scratch of one batch. Pairs are stored by token (CSR: row[t]..row[t+1]) and regrouped by
// latent for the backward (lrow/lpair).
typedef struct {
    int64_t B, D, N;
    int64_t DO;    // width of x_hat: D except for transcoders
    float *xc;     // (B, D) x - b_dec (transcoders: x; their b_dec is an output)
    float *z;      // (B, N) pre-activations (allocated on first use; never under bf16 topk)
    float *xhat;   // (B, DO)
    float *g;      // (B, DO) dL/dx_hat
    float *nrm;    // (N) decoder row norms
    int64_t *row;  // (B+1) token CSR offsets
    int32_t *lat;  // (cap) latent of each pair
    float *a;      // (cap) decode coefficient: x_hat += a * W_dec_i
    float *f;      // (cap) activation as reported (z * ||W_dec_i|| when rescaling)
    float *pg;     // (cap) gated: the gate pre-activation pi of each pair (> 0)
    int32_t *tok;  // (cap) token of each pair
    int64_t *lrow; // (N+1) latent CSR offsets
    int64_t *lpair; // (cap) pair indices grouped by latent, token order within a latent
    int64_t nnz, cap;
    // jumprelu: pairs inside the STE band |z - theta| < eps/2 (threshold gradient)
    int64_t *brow; int32_t *blat; int32_t *btok; int64_t bnnz, bcap;
    int64_t *blrow; int64_t *blpair;
    float *zsub;    // (B, n_sub) pre-activations of arch_opts.sub, when given
    const int32_t *sub; // that list (owned by the caller)
    int64_t n_sub, zsub_cap;
    float min_kept; // batchtopk: smallest kept activation (threshold EMA)
    // matryoshka: the inner prefixes' reconstructions (n_widths - 1, B, D); after
    // arch_backward_prepare the suffix sums of their dL/dx_hat (level j: sum over levels >= j)
    float *xm;
    int64_t xm_cap;
    int n_levels;   // n_widths of the last forward (1 for the others)
    float *xaux;    // gated: (B, D) ReLU(pi) W_dec + b_dec; after prepare its dL/d
    float *er;      // (N) gated: exp(r_mag)
    uint32_t *xpk, *wpk; // bf16: packed xc and W_enc (allocated on first use)
    float *wsub;         // bf16: the W_enc rows of sub, for zsub in f32
    int64_t wsub_cap;
    int bf16;            // the last forward chose on bf16 pre-activations (z approximate; zsub is f32)
    // loss terms of the last forward
    double mse_loss, sparsity_loss, aux_loss, l1_magnitude, sse, sst;
    double t_encode, t_select, t_decode, t_backward; // accumulated wall seconds (benchmarks)
    // batchtopk when this batch is one part of a larger one (data parallelism): cut_keep is the
    // whole batch's k x rows; cut, given this part's best positive candidates (v, flat index into
    // this part's (B, N), at most cut_keep of them), returns the whole batch's cut in this part's
    // flat indices (*cut_i INT64_MAX: keep every positive). NULL (arch_work_init): the batch is whole.
    cterp_status (*cut)(void *user, const float *v, const int64_t *flat, int64_t n, int64_t keep,
                        float *cut_v, int64_t *cut_i);
    void *cut_user;
    int64_t cut_keep;
} arch_work;

cterp_status arch_work_init(arch_work *w, int64_t B, int64_t D, int64_t N);
// The same for an x_hat of width DO (transcoders).
cterp_status arch_work_init_out(arch_work *w, int64_t B, int64_t D, int64_t DO, int64_t N);
void arch_work_free(arch_work *w);

// Forward over x (B, D): fills xc, z, pairs, xhat and the loss terms. theta (N) is the jumprelu
// threshold (ignored otherwise).
cterp_status arch_forward(arch_work *w, const cterp_sae *sae, const arch_opts *o, const float *theta,
                          const float *x);

// Backward of mse + sparsity + aux_loss into grads laid out like sae->params (W_enc, b_enc, W_dec,
// b_dec, + r_mag, b_mag for gated): every element is written (no zeroing needed); dtheta (N)
// receives dL/dtheta for jumprelu (may be NULL otherwise; written, not accumulated). Uses x (B, D)
// from the forward. The b_dec gradient through the input centring is left to arch_bdec_from_benc.
// skip_transcoder: the W_skip gradient (DO, D) follows db_dec in grads (its place in sae->params).
void arch_backward(arch_work *w, const cterp_sae *sae, const arch_opts *o, const float *theta,
                   const float *x, float *grads, float *dtheta);

// The backward in parts, for callers that want each latent's rows while they are in cache (the
// trainer takes their norms there): prepare fills w->g = dL/dx_hat, db_dec (D) = its decoder part, and the latent grouping;
// arch_latent_grad then writes latent i's W_enc row gradient gWe (D) and W_dec row gradient gWd
// (D), sets *dtheta_i (jumprelu, if not NULL), for gated writes dL/dr_mag_i to gx[i] and
// dL/db_mag_i to gx[N + i] (gx: the 2N gradients after b_dec's), and returns dL/db_enc_i (gated:
// dL/db_gate_i). It only reads shared state, so it may run for different latents at once and
// again for the same latent (same result).
// arch_backward is prepare + arch_latent_grad for every latent into grads.
// skip_transcoder: prepare also writes dW_skip (DO, D) right after db_dec (DO), as in grads.
void arch_backward_prepare(arch_work *w, const arch_opts *o, const float *x, float *db_dec);
float arch_latent_grad(const arch_work *w, const cterp_sae *sae, const arch_opts *o,
                       const float *theta, int64_t i, float *gWe, float *gWd, float *dtheta_i,
                       float *gx);

// Adds the gradient of extra pairs to the latent grads: for each pair (token t, latent i,
// coefficient a, upstream gradient G_t (B, D)): dW_dec_i += a G_t, dz = G_t . W_dec_i,
// dW_enc_i += dz xc_t, db_enc_i += dz. Used by AuxK. Pairs are grouped by latent internally.
// Returns the sum over pairs of dz per latent in db_enc (and the b_dec term is applied by
// arch_bdec_from_benc).
void arch_backward_pairs(arch_work *w, const cterp_sae *sae, const float *G, int64_t npairs,
                         const int32_t *tok, const int32_t *lat, const float *a, float *grads);

// dL/db_dec through the input centring: db_dec -= sum_i c_i W_enc_i, c_i = db_enc_i (gated:
// db_gate_i + exp(r_mag_i) db_mag_i, db_mag (N) given; NULL for the others). Nothing for
// transcoders (no centring).
void arch_bdec_from_benc(const cterp_sae *sae, const float *db_enc, const float *db_mag,
                         float *db_dec);

// f32 pre-activation of latent i for token t: b_enc_i + xc_t . W_enc_i (after a forward).
// Whether the bf16 TopK forward runs the GEMM fused with the top-k (no z) by default.
int arch_bf16_fuses(int64_t N, int64_t D, int k);
float arch_preact(const arch_work *w, const cterp_sae *sae, int64_t t, int64_t i);

// Pairs of the naive reference: dense f (B, N) as the training forward defines it.
void arch_forward_naive(float *f, const cterp_sae *sae, const arch_opts *o, const float *theta,
                        const float *x, int64_t B);

#endif
