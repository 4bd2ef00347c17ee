// cterp: sparse-autoencoder interpretability in C. The umbrella header: one include for the
// whole public API (each module's header documents its part).
#ifndef CTERP_H
#define CTERP_H

#include "cterp/acts.h"      // activation store and cache (sources for the trainer)
#include "cterp/analysis.h"  // eval with the SAE spliced in; cterp_train_sae
#include "cterp/dashboard.h" // self-contained HTML dashboards and training reports
#include "cterp/data.h"      // datasets and context windows
#include "cterp/error.h"     // status codes and the per-thread error message
#include "cterp/isa.h"       // the kernel variant (instruction set) in use
#include "cterp/version.h"   // CTERP_VERSION
#include "cterp/features.h"  // per-latent stats, examples, logit effects; steering hooks
#include "cterp/model.h"     // GGUF language models with TransformerLens hook points
#include "cterp/sae.h"       // SAE parameters, encode/decode, SAELens directories
#include "cterp/tokenizer.h" // SentencePiece-BPE and GPT-2 byte-level BPE from a GGUF vocab
#include "cterp/toy.h"       // the toy model of superposition and MMCS
#include "cterp/source.h"    // activation sources: what the trainer reads
#include "cterp/train.h"     // training config, the trainer

#endif
