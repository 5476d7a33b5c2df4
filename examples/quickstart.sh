#!/usr/bin/env bash
# End-to-end demo on a laptop CPU, no pretrained weights needed (about 10 minutes on 2 cores):
# the demo heads generator that ships with the plugin (EG3D's own `tiny` generator trained here by
# `train-heads` to draw procedural 3D heads) -> a set of its renders -> a regressor trained on
# them -> image -> w, pose -> reconstruction, novel views, depth, a .ply mesh; an interpolation
# of the regressed codes; and an edit along a boundary learnt from the heads' known skin tone.
# (`init-network --preset tiny` instead gives a randomly initialised generator: coloured fog.)
#   bash examples/quickstart.sh [OUTDIR]     (PAIRS=2000 KIMG=120 for a better regressor)
set -euo pipefail
out=${1:-demo}
pairs=${PAIRS:-1000}
kimg=${KIMG:-60}
mkdir -p "$out"

eg3d-regress init-network --preset heads --out "$out/G.pkl"
# A fixed set of renders used many times (as the seed's 50,000 pairs) learns far more per CPU
# minute than pairs rendered on the fly, which is the better choice on a GPU.
[ -f "$out/pairs.zip" ] || eg3d-regress dataset --network "$out/G.pkl" --count "$pairs" --resolution 64 --dest "$out/pairs.zip"
# CPU settings (benchmarks/learning_curve.py's): the pSp encoder at 32 px, one w for all levels
# (EG3D's mapping gives every level the same w), the learning rate ramped down over the last half.
eg3d-regress train --network "$out/G.pkl" --data "$out/pairs.zip" --arch psp --input-res 32 --single-w \
    --lr-rampdown 0.5 --outdir "$out/runs" --kimg "$kimg"
reg=$(ls -t "$out"/runs/*/regressor-snapshot-*.pt | head -n 1)
echo "Regressor: $reg"

# Two EG3D renders (with their true codes) to invert, as `gen --no-align` inputs.
eg3d-regress sample-codes --network "$out/G.pkl" --count 2 --seed 100 --outdir "$out/codes"
eg3d-regress gen --network "$out/G.pkl" --regressor "$reg" --image "$out/codes/*.png" --no-align \
    --shapes --shape-format .ply --shape-res 128 --outdir "$out/gen"

# A real photo (shipped with scikit-image), aligned like EG3D's FFHQ crops (needs the align extra).
python -c "import skimage.data, PIL.Image; PIL.Image.fromarray(skimage.data.astronaut()).save('$out/astronaut.jpg')"
eg3d-regress gen --network "$out/G.pkl" --regressor "$reg" --image "$out/astronaut.jpg" --outdir "$out/gen"

# Move the regressed codes: an interpolation between the two renders' codes, with a video.
eg3d-regress interp --network "$out/G.pkl" --from "$out/gen/seed0100/w.npy" --to "$out/gen/seed0101/w.npy" \
    --steps 7 --video --outdir "$out/interp"
# An edit whose truth is known: codes scored by their heads' true skin tone, the boundary, the sweep.
eg3d-regress sample-codes --network "$out/G.pkl" --count 400 --seed 5000 --no-images --head-scores skin_tone \
    --outdir "$out/skin_codes"
eg3d-regress boundary --codes "$out/skin_codes" --scores "$out/skin_codes/scores.csv" --ratio 0.2 --out "$out/skin_tone.npy"
eg3d-regress edit --network "$out/G.pkl" --w "$out/gen/seed0100/w.npy" --boundary "$out/skin_tone.npy" \
    --alphas -3:3:5 --outdir "$out/edit"
echo "Done: see $out/gen/*/comparison.png, $out/gen/*/views.png, $out/gen/*/shape.ply, $out/interp, $out/edit"
