#!/usr/bin/env bash
# End-to-end demo on a laptop CPU, no pretrained weights needed (about 10 minutes on 2 cores):
# a randomly initialised `tiny` EG3D generator -> a regressor trained on its own renders ->
# image -> w, pose -> reconstruction, novel views, depth, a .ply mesh; then an edit and an
# interpolation of the regressed codes.
#   bash examples/quickstart.sh [OUTDIR]        (KIMG=4 for a longer training run)
set -euo pipefail
out=${1:-demo}
kimg=${KIMG:-2}
mkdir -p "$out"

eg3d-regress init-network --preset tiny --out "$out/G.pkl" --seed 0
eg3d-regress train --network "$out/G.pkl" --arch unet --outdir "$out/runs" --kimg "$kimg"
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
echo "Done: see $out/gen/*/comparison.png, $out/gen/*/views.png, $out/gen/*/shape.ply, $out/interp"
