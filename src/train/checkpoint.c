// Checkpoints and the final save (written once the safetensors module lands).
#include "train/trainer_impl.h"

cterp_status cterp_trainer_checkpoint(cterp_trainer *t, const char *dir) {
    return cterp_error(CTERP_EINVAL, "%s: checkpoints not available yet", dir);
}

cterp_status cterp_trainer_save(const cterp_trainer *t, const char *dir) {
    return cterp_error(CTERP_EINVAL, "%s: save not available yet", dir);
}
