// cli_inspect_gguf (src/cli/inspect_gguf.c, compiled in here since the CLI is not a library)
// on a synthetic model and on stories260K: metadata, tensors, config and hook names printed.
#include "cli/inspect_gguf.c"
#include "core/file.h"
#include "synth_model.h"
#include "test.h"

static char *run_inspect(const char *path, const char *tmp, int *rc) {
    char out[600];
    snprintf(out, sizeof out, "%s/inspect.txt", tmp);
    fflush(stdout);
    int saved = dup(1);
    FILE *f = freopen(out, "w", stdout);
    *rc = f ? cli_inspect_gguf(path) : -1;
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    stdout = fdopen(1, "w");
    char *text = NULL;
    size_t len;
    file_read_all(out, &text, &len);
    return text;
}

int main(void) {
    const char *tmp = test_tmpdir("inspect");
    char path[600];
    snprintf(path, sizeof path, "%s/m.gguf", tmp);
    synth_cfg sc = {1, 2, 64, 4, 4, 128, 100, 32, 0, 0, 1, GGML_TYPE_Q8_0, 5, 0};
    CHECK_OK(synth_write(path, &sc));
    int rc;
    char *t = run_inspect(path, tmp, &rc);
    CHECK(rc == 0 && t);
    if (t) {
        CHECK(strstr(t, "general.architecture") && strstr(t, "\"gpt2\""));
        CHECK(strstr(t, "blk.1.attn_qkv.weight") && strstr(t, "Q8_0") && strstr(t, "[64, 192]"));
        CHECK(strstr(t, "model: gpt2, 2 layers, d_model 64"));
        CHECK(strstr(t, "hook_pos_embed") && strstr(t, "blocks.{0..1}.hook_resid_post") &&
              strstr(t, "ln_final.hook_normalized"));
    }
    free(t);
    CHECK(cli_inspect_gguf("/nonexistent.gguf") == 1);
    const char *dir = test_data_dir();
    if (dir) {
        snprintf(path, sizeof path, "%s/models/stories260K.gguf", dir);
        t = run_inspect(path, tmp, &rc);
        CHECK(rc == 0 && t && strstr(t, "model: llama, 5 layers") &&
              strstr(t, "tokenizer: llama, 512 tokens") && strstr(t, "mlp.hook_pre_linear"));
        free(t);
        snprintf(path, sizeof path, "%s/vocab/ggml-vocab-gpt-2.gguf", dir);
        t = run_inspect(path, tmp, &rc);
        CHECK(rc == 0 && t && strstr(t, "tokenizer.ggml.merges") && strstr(t, "not loadable"));
        free(t);
    } else
        printf("skip: stories260K part (shared test data not found)\n");
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
    return test_done();
}
