#!/usr/bin/env bash
# cterp features / steer / dashboard / report on stories260K with an SAE of 1,000 latents trained
# here: files and their JSON, --text, side-by-side steering, clear errors, the dashboard's size
# bound, and headless Chromium: no console errors, the sorted index, the feature page's examples
# in the DOM and a screenshot with activation-shaded tokens (skips without test data / chromium).
set -u
. "$(dirname "$0")/common.sh"

"$bin" features --model x.gguf >/dev/null 2>&1; check "features without --sae exits 2" '[ $? -eq 2 ]'
"$bin" steer --model x.gguf --sae s --feature 1 --prompt p >/dev/null 2>&1; check "steer without an edit exits 2" '[ $? -eq 2 ]'
"$bin" dashboard --out d >/dev/null 2>&1; check "dashboard without input exits 2" '[ $? -eq 2 ]'
err=$("$bin" dashboard --features "$tmp/nothing" --out "$tmp/d" 2>&1); rc=$?
check "a missing features dir is named" '[ $rc -eq 1 ] && [[ "$err" == *"$tmp/nothing"* ]]'
printf '{"step": 1, "loss": 2}\nnot json\n' > "$tmp/bad.jsonl"
err=$("$bin" report "$tmp/bad.jsonl" --out "$tmp/r.html" 2>&1); rc=$?
check "a bad metrics line is named" '[ $rc -eq 1 ] && [[ "$err" == *"bad.jsonl:2:"* ]]'
need_stories
for i in $(seq 1 10); do "$bin" generate --model "$m" -n 100 --temp 1 --seed "$i" 2>/dev/null | tr '\n' ' '; echo; done > "$tmp/s.txt"
"$bin" train --model "$m" --layer 2 --component resid --data "$tmp/s.txt" --context-size 32 --d-sae 1000 --k 8 \
    --batch 128 --steps 60 --log-every 10 --buffer-rows 1024 --seed 5 --quiet --eval-windows 0 --out "$tmp/sae" >/dev/null 2>&1
check "trained a 1000-latent SAE" '[ -f "$tmp/sae/cfg.json" ] && [ -f "$tmp/sae/metrics.jsonl" ]'

out=$("$bin" features --model "$m" --sae "$tmp/sae" --data "$tmp/s.txt" --out "$tmp/feats" --loss-windows 4 --neuronpedia "$tmp/np.json" 2>&1)
check "features writes features.json and latents.jsonl" '[ -f "$tmp/feats/features.json" ] && [ -f "$tmp/feats/latents.jsonl" ] && [[ "$out" == *"1000 latents"* ]]'
check "the files are JSON: 1000 latent lines, summary arrays, examples with contexts" 'python3 - "$tmp/feats" <<EOF
import json, sys
d = sys.argv[1]
h = json.load(open(d + "/features.json"))
L = [json.loads(l) for l in open(d + "/latents.jsonl")]
assert h["format"] == "cterp-features" and h["d_sae"] == 1000 and len(L) == 1000 and len(h["max_act"]) == 1000
assert h["hook"] == "blocks.2.hook_resid_post" and h["context_size"] == 32 and len(h["vocab"]) == 512
alive = [x for x in L if x["fired"] > 0]
assert len(alive) > 100
for x in alive:
    assert x["top"][0]["act"] == x["max_act"] and sum(x["hist"]["counts"]) == x["fired"]
    e = x["top"][0]
    assert e["acts"][e["pos"] - e["start"]] == e["act"] and len(e["tokens"]) == len(e["acts"]) <= 11
    assert sum(g["count"] for g in x["quantiles"]) == x["fired"]
    assert len(x["logits"]["top"]) == 10
EOF'
check "format 2: correlated latents, ablation effects and the token view are stored" 'python3 - "$tmp/feats" <<EOF
import json, sys
d = sys.argv[1]
h = json.load(open(d + "/features.json"))
L = [json.loads(l) for l in open(d + "/latents.jsonl")]
assert h["version"] == 2 and h["config"]["loss_windows"] == 4 and h["config"]["cofire"] is True
assert len(h["token_view"]) == 4 and all(len(v["tokens"]) == 32 == len(v["latents"]) for v in h["token_view"])
measured = [x for x in L if x["loss"]["n"] > 0]
assert len(measured) > 20, len(measured)
for x in L:
    assert len(x["decoder"]) == 5 and all(-1 <= c <= 1 for _, c in x["decoder"])
    assert all(0 < j <= 1 and k != x["i"] for k, j in x["cofire"])
    tops = [t["dloss"] for t in x["loss"]["top"]]
    assert tops == sorted(tops, reverse=True) and len(tops) == min(5, x["loss"]["n"])
    if x["fired"] == 0: assert x["cofire"] == [] and x["loss"]["n"] == 0
# Jaccard is symmetric: where both list each other, the values agree
J = {(x["i"], k): j for x in L for k, j in x["cofire"]}
assert all(abs(J[(b, a)] - j) < 1e-6 for (a, b), j in J.items() if (b, a) in J)
EOF'
schema=$(dirname "$0")/data/schema
check "the Neuronpedia export conforms to its schema (SAEDashboard's batch), field by field" 'python3 "$(dirname "$0")/json_schema_check.py" "$schema/neuronpedia_batch.schema.json" "$tmp/np.json" --strict'
check "the Neuronpedia export carries the features' values" 'python3 - "$tmp/np.json" "$tmp/feats" <<EOF
import json, sys
b = json.load(open(sys.argv[1]))
d = sys.argv[2]
h = json.load(open(d + "/features.json"))
L = [json.loads(l) for l in open(d + "/latents.jsonl")]
assert b["layer"] == 2 and b["model_id"] == "stories260K.gguf" and b["sae_set"] == "cterp" and len(b["features"]) == 1000
for f, x in zip(b["features"], L):
    assert f["feature_index"] == x["i"] and f["frac_nonzero"] == x["frequency"]
    assert f["pos_str"] == [h["vocab"][t] for t, _ in x["logits"]["top"]] and f["neg_values"] == [v for _, v in x["logits"]["bottom"]]
    assert f["freq_hist_data_bar_heights"] == x["hist"]["counts"] and len(f["logits_hist_data_bar_values"]) == 32
    acts = f["activations"]
    assert len(acts) == len(x["top"]) + sum(len(g["examples"]) for g in x["quantiles"])
    for a, e in zip(acts, x["top"]):
        assert a["bin_min"] == -1 and a["bin_max"] == x["max_act"] and a["values"] == e["acts"]
        assert a["tokens"] == [h["vocab"][t] for t in e["tokens"]]
    if x["quantiles"]:
        g = [g for g in x["quantiles"] if g["examples"]][-1]
        a = acts[len(x["top"])]
        assert a["bin_min"] == g["lo"] and a["bin_max"] == g["hi"] and abs(a["bin_contains"] - g["count"] / x["fired"]) < 1e-12
EOF'
python3 -c "import json,sys; b=json.load(open(sys.argv[1])); del b['features'][7]['pos_values']; b['features'][9]['activations'][0]['tokens'][0]=3; json.dump(b, open(sys.argv[2], 'w'))" "$tmp/np.json" "$tmp/np_bad.json"
err=$(python3 "$(dirname "$0")/json_schema_check.py" "$schema/neuronpedia_batch.schema.json" "$tmp/np_bad.json" --strict); rc=$?
check "the validator names a missing field and a wrong type" '[ $rc -eq 1 ] && [[ "$err" == *"features[7]: required field '"'"'pos_values'"'"' is missing"* ]] && [[ "$err" == *"features[9].activations[0].tokens[0]: expected string"* ]]'
"$bin" eval --model "$m" --sae "$tmp/sae" --data "$tmp/s.txt" --windows 8 --json --saebench "$tmp/sb.json" >"$tmp/ev.json" 2>/dev/null
check "the SAEBench export conforms to SAEBench's core output schema" 'python3 "$(dirname "$0")/json_schema_check.py" "$schema/saebench_core.schema.json" "$tmp/sb.json" --strict'
check "the SAEBench export carries the eval's values" 'python3 - "$tmp/sb.json" "$tmp/ev.json" <<EOF
import json, sys
b = json.load(open(sys.argv[1]))
e = json.load(open(sys.argv[2]))
M = b["eval_result_metrics"]
assert b["eval_type_id"] == "core" and b["eval_config"]["context_size"] == 32
for cat, k in [("sparsity", "l0"), ("model_performance_preservation", "ce_loss_score"), ("model_behavior_preservation", "kl_div_score"), ("reconstruction_quality", "explained_variance"), ("shrinkage", "l2_ratio")]:
    assert abs(M[cat][k] - e[k]) < 1e-7 * max(1, abs(e[k])), (k, M[cat][k], e[k])
D = b["eval_result_details"]
assert [x["index"] for x in D] == list(range(1000))
assert abs(sum(x["feature_density"] for x in D) - e["l0"]) < 1e-6  # the densities add up to L0
assert abs(M["misc_metrics"]["frac_alive"] - (1000 - e["dead_latents"]) / 1000) < 1e-12
assert all((x["consistent_activation_heuristic"] == -1) == (x["feature_density"] == 0) for x in D)
assert all(x["consistent_activation_heuristic"] >= 1 for x in D if x["feature_density"] > 0)
assert b["eval_result_unstructured"]["cterp"]["density_histogram"]["counts"] == e["density_histogram"]
EOF'

out=$("$bin" features --model "$m" --sae "$tmp/sae" --text "Tom had a red ball. He liked to play with it." --top 5)
check "features --text ranks latents and lists tokens" '[[ "$out" == *"latents by their largest activation"* ]] && [[ "$out" == *"per token"* ]] && [ $(printf "%s\n" "$out" | grep -c "of 18 tokens") -eq 5 ]'

out=$("$bin" steer --model "$m" --sae "$tmp/sae" --feature 3 --strength 8 --prompt "Once upon a time" -n 20 --temp 0.8 --seed 4)
check "steer prints both generations" '[[ "$out" == *"--- without ---"* ]] && [[ "$out" == *"--- with ---"* ]]'
without=$(printf "%s\n" "$out" | sed -n "/--- without ---/{n;p}"); with=$(printf "%s\n" "$out" | sed -n "/--- with ---/{n;p}")
check "the steered text differs, same seed" '[ -n "$with" ] && [ "$with" != "$without" ]'
out2=$("$bin" generate --model "$m" --prompt "Once upon a time" -n 20 --temp 0.8 --seed 4 2>/dev/null)
check "the unsteered text is plain generation with that seed" '[ "$out2" = "$without" ]'
out=$("$bin" steer --model "$m" --sae "$tmp/sae" --feature 3 --ablate --prompt "Once upon a time" -n 10)
check "ablation reports the latent's activation before the edit" '[[ "$out" == *"ablated"* ]] && [[ "$out" == *"mean activation before the edit"* ]]'
err=$("$bin" steer --model "$m" --sae "$tmp/sae" --feature 1000 --clamp 3 --prompt "x" 2>&1); rc=$?
check "feature out of range names the index and d_sae" '[ $rc -eq 1 ] && [[ "$err" == *"feature 1000 out of range"* ]] && [[ "$err" == *"d_sae 1000"* ]]'
err=$("$bin" steer --model "$m" --sae "$tmp/nosae" --feature 1 --ablate --prompt "x" 2>&1); rc=$?
check "a missing SAE dir is named" '[ $rc -eq 1 ] && [[ "$err" == *"$tmp/nosae"* ]]'
err=$("$bin" steer --model "$m" --sae "$tmp/sae" --hook blocks.2.mlp.hook_post --feature 1 --ablate --prompt "x" 2>&1); rc=$?
check "a hook of another width is a clear error" '[ $rc -eq 1 ] && [[ "$err" == *"blocks.2.mlp.hook_post has 172 values per token, the SAE'"'"'s d_in is 64"* ]]'
err=$("$bin" features --model "$m" --sae "$tmp/sae" --data "$tmp/missing.txt" --out "$tmp/f2" 2>&1); rc=$?
check "unreadable data is named" '[ $rc -eq 1 ] && [[ "$err" == *"$tmp/missing.txt"* ]]'
err=$("$bin" features --model "$m" --sae "$tmp/sae" --data "$tmp/s.txt" --context-size 5000 --out "$tmp/f3" 2>&1); rc=$?
check "too short data: one clear line, the command named once" '[ $rc -eq 1 ] && [[ "$err" == "cterp features: $tmp/s.txt has no complete window of 5000 tokens"* ]]'

out=$("$bin" dashboard --features "$tmp/feats" --out "$tmp/dash" --metrics "$tmp/sae/metrics.jsonl" 2>&1)
check "dashboard writes index, 1000 pages and the training report" '[ -f "$tmp/dash/index.html" ] && [ -f "$tmp/dash/f/999.html" ] && [ -f "$tmp/dash/training.html" ] && [ $(ls "$tmp/dash/f" | wc -l) -eq 1000 ]'
isz=$(stat -c %s "$tmp/dash/index.html"); fmax=$(stat -c %s $(ls -S "$tmp"/dash/f/*.html | head -1)); tot=$(du -sk "$tmp/dash" | cut -f1)
echo "dashboard for 1000 latents: index.html $isz bytes, largest latent page $fmax bytes, total $tot KiB"
check "size bound: index < 256 KiB, each latent page < 64 KiB" '[ $isz -lt 262144 ] && [ $fmax -lt 65536 ]'
check "self-contained: no external URL" '! grep -l -E "(src|href)=\"(https?:)?//" -r "$tmp/dash" >/dev/null'
check "tokens.html: which latents fire at each of the 4 x 32 tokens, linked from the index" 'python3 - "$tmp/dash" "$tmp/feats" <<EOF
import json, re, sys, os
d = sys.argv[1]
page = open(d + "/tokens.html").read()
h = json.load(open(sys.argv[2] + "/features.json"))
assert "Which latents fire here" in page and "href=\"tokens.html\"" in open(d + "/index.html").read()
rows = re.findall(r"<tr><td>(\d+)<td class=\"l\"><i>[^<]*</i><td class=\"l\">(.*?)</tr>", page)
assert len(rows) == 4 * 32, len(rows)
for (pos, cell), lat in zip(rows, [l for v in h["token_view"] for l in v["latents"]]):
    assert re.findall(r"f/(\d+)\.html", cell) == [str(i) for i, _ in lat]
    assert all(os.path.exists(d + "/f/%d.html" % i) for i, _ in lat)
EOF'
check "latent pages show correlated latents and the ablation effect" 'python3 - "$tmp/dash" "$tmp/feats" <<EOF
import json, re, sys
d = sys.argv[1]
L = [json.loads(l) for l in open(sys.argv[2] + "/latents.jsonl")]
x = max(L, key=lambda x: x["loss"]["n"])
page = open(d + "/f/%d.html" % x["i"]).read()
assert "Correlated latents" in page and "Ablation effect on the next-token loss" in page
corr = page[page.index("id=\"corr\""):page.index("id=\"loss\"")]
assert re.findall(r"<a href=\"(\d+)\.html\">", corr) == [str(k) for k, _ in x["cofire"]] + [str(k) for k, _ in x["decoder"]]
assert ("over %d positions" % x["loss"]["n"]) in page
assert len(re.findall(r"<tr><td class=\"l\">w\d+:\d+<td", page)) == len(x["loss"]["top"])
EOF'
out=$("$bin" dashboard --model "$m" --sae "$tmp/sae" --data "$tmp/s.txt" --windows 4 --top 3 --out "$tmp/dash2" 2>&1)
check "dashboard --model runs the pass, keeps it and finds the SAE's metrics" '[ -f "$tmp/dash2/features/latents.jsonl" ] && [ -f "$tmp/dash2/training.html" ] && [ -f "$tmp/dash2/f/999.html" ] && [[ "$out" == *"over 4 windows"* ]]'
"$bin" report "$tmp/sae/metrics.jsonl" --out "$tmp/report.html" 2>/dev/null
check "report draws the series" '[ $(grep -o "<polyline" "$tmp/report.html" | wc -l) -ge 5 ] && grep -q "explained_variance" "$tmp/report.html"'

if [ -n "${CTERP_SANITIZED:-}" ]; then # the same HTML as the release run: the browser adds nothing here
    echo "skip: browser checks (they run in the release suite)"
    exit $fail
fi
if ! command -v chromium >/dev/null 2>&1; then
    echo "skip: chromium not installed (scripts/deps.sh installs it)"
    exit $fail
fi
# the most frequent latent has a full page: top and quantile examples
lat=$(python3 -c "import json,sys; h=json.load(open(sys.argv[1])); f=h['frequency']; print(max(range(len(f)), key=lambda i: f[i]))" "$tmp/feats/features.json")
nex=$(python3 -c "import json,sys; x=[json.loads(l) for l in open(sys.argv[1])][int(sys.argv[2])]; print(len(x['top']) + sum(len(g['examples']) for g in x['quantiles']))" "$tmp/feats/latents.jsonl" "$lat")
chrome() { timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --enable-logging=stderr --v=0 "$@"; }
chrome --window-size=1280,900 --screenshot="$tmp/feature.png" "file://$tmp/dash/f/$lat.html" >/dev/null 2>"$tmp/c1.log"; rc=$?
check "chromium rendered the latent page (rc $rc)" '[ $rc -eq 0 ] && [ -s "$tmp/feature.png" ]'
chrome --dump-dom "file://$tmp/dash/index.html#sort=max" >"$tmp/index.dom" 2>"$tmp/c3.log"
chrome --dump-dom "file://$tmp/dash/tokens.html" >"$tmp/tokens.dom" 2>"$tmp/c4.log"
chrome --dump-dom "file://$tmp/dash/index.html#sort=loss" >"$tmp/index_loss.dom" 2>>"$tmp/c4.log"
check "no console messages or errors on any page" '! grep -h -E "CONSOLE|Uncaught" "$tmp"/c[134].log && grep -q "Which latents fire here" "$tmp/tokens.dom"'
# the latent page has no script: its DOM is the file; the screenshot below shows it rendered
check "the latent page holds its $nex examples" '[ $(grep -o "<div class=\"ex\">" "$tmp/dash/f/$lat.html" | wc -l) -eq $nex ]'
check "the index sorts by max activation on load (JS ran)" 'python3 - "$tmp/index.dom" "$tmp/feats/features.json" <<EOF
import json, re, sys
dom = open(sys.argv[1]).read()
assert "data-sorted=\"3d\"" in dom
first = int(re.search(r"<tbody>\s*<tr><td><a href=\"f/(\d+)\.html\"", dom).group(1))
mx = json.load(open(sys.argv[2]))["max_act"]
assert mx[first] == max(mx), (first, mx[first], max(mx))
EOF'
check "the index sorts by the ablation effect (#sort=loss)" 'python3 - "$tmp/index_loss.dom" "$tmp/feats/latents.jsonl" <<EOF
import json, re, sys
dom = open(sys.argv[1]).read()
assert "data-sorted=\"6d\"" in dom
first = int(re.search(r"<tbody>\s*<tr><td><a href=\"f/(\d+)\.html\"", dom).group(1))
L = [json.loads(l) for l in open(sys.argv[2])]
best = max((x for x in L if x["loss"]["n"] > 0), key=lambda x: x["loss"]["mean"])
assert abs(L[first]["loss"]["mean"] - best["loss"]["mean"]) < 1e-3 * max(1, abs(best["loss"]["mean"])), (first, best["i"])
EOF'
check "the screenshot shows activation-shaded tokens" 'python3 - "$tmp/feature.png" <<EOF
import struct, sys, zlib
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n"
pos, idat = 8, b""
while pos < len(b):
    n, t = struct.unpack(">I4s", b[pos:pos + 8])
    d = b[pos + 8:pos + 8 + n]
    if t == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", d[:10])
        assert depth == 8 and ctype in (2, 6)
        bpp = 3 if ctype == 2 else 4
    elif t == b"IDAT":
        idat += d
    pos += 12 + n
raw, stride = zlib.decompress(idat), w * bpp
prev, rows = bytes(stride), []  # PNG row filters: none, sub, up, average, Paeth
for y in range(h):
    f, cur = raw[y * (stride + 1)], raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)]
    if f == 2:
        line = bytes((x + u) & 255 for x, u in zip(cur, prev))
    elif f == 0:
        line = cur
    else:
        line = bytearray(cur)
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
                continue
            u = prev[i]
            if f == 3:
                line[i] = (line[i] + ((a + u) >> 1)) & 255
                continue
            c = prev[i - bpp] if i >= bpp else 0
            p = a + u - c
            pa, pb, pc = abs(p - a), abs(p - u), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else u if pb <= pc else c)) & 255
        line = bytes(line)
    rows.append(line)
    prev = line
px = [r[i:i + 3] for r in rows for i in range(0, stride, bpp)]
colours = len(set(px))
orange = sum(1 for p in px if p[0] > 240 and 110 < p[1] < 235 and p[2] < 200)
print("screenshot %dx%d: %d colours, %d activation-shaded pixels" % (w, h, colours, orange))
assert colours > 20 and orange > 500
EOF'
exit $fail
