"""The seed flow end to end on stories260K, in Python: a corpus, an SAE trained on the MLP output
of layer 2, the top features of a text, the top texts of a feature, steering with it, and a
dashboard. Usage: python3 examples/seed_flow.py [MODEL.gguf] [OUT_DIR]
(from the source tree: PYTHONPATH=python python3 python/examples/seed_flow.py)."""
import os
import sys
import tempfile

import cterp
from cterp import InterpretableModel, SAEConfig


def main():
    data = os.environ.get("CTERP_TESTDATA", os.path.join(os.path.dirname(__file__), "..", "..",
                                                         "..", "shared", "testdata"))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(data, "models", "stories260K.gguf")
    out = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="cterp_seed_")
    model = InterpretableModel(path)
    print(model)

    # a corpus: 20 stories sampled from the model itself
    texts = [model.generate("", 120, temperature=1.0, seed=i) for i in range(20)]

    # train an SAE on blocks.2.hook_mlp_out (mlxterp: model.model.layers.2.mlp)
    config = SAEConfig(d_sae=512, k=8, batch_size=256, training_steps=150, log_every=50)
    sae = model.train_sae(layer=2, dataset=texts, component="mlp",
                          save_path=os.path.join(out, "sae"), config=config, context_size=64)
    print(sae, "explained variance %.3f" % sae.metrics["explained_variance"])

    # what fires on a text, and where a feature fires most
    text = "Once upon a time, there was a little girl named Lily."
    top = model.get_top_features_for_text(text, sae, layer=2, component="mlp", top_k=5)
    print("top features:", ", ".join("%d (%.2f)" % ft for ft in top))
    feature = top[0][0]
    for t, act, pos in model.get_top_texts_for_feature(feature, sae, texts, layer=2, top_k=3):
        print("  %.2f at token %d: %s..." % (act, pos, t[:60]))

    # steer with it (added to the MLP output at every position) and without
    prompt = "Once upon a time"
    print("plain:  ", model.generate(prompt, 30))
    print("steered:", model.generate(prompt, 30, steer={feature: 4.0}, sae=sae))

    # the dashboard (index.html, f/I.html, training.html) over the same corpus, as a file
    corpus = os.path.join(out, "texts.txt")
    with open(corpus, "w") as f:
        f.write("\n".join(" ".join(t.splitlines()) for t in texts) + "\n")
    index = cterp.dashboard(os.path.join(out, "dashboard"), model=model, sae=sae, data=corpus)
    print("dashboard:", index)


if __name__ == "__main__":
    main()
