# Sourced by the bench/gpu/*.sh scripts after they set OUT: installs the carried wheels (.whl/)
# where PyAV, zarr, Hydra or fsspec are missing, defines PY and fc (python -m pipeline), and
# records the card every number belongs to in $OUT/card.txt.
mkdir -p "$OUT"
PY=${PY:-python3}
if [ -d .whl ] && ! "$PY" -c 'import zarr, av, hydra, fsspec' 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
fc() { "$PY" -m pipeline "$@"; }
(nvidia-smi -L || echo "no nvidia-smi") > "$OUT/card.txt"
cat "$OUT/card.txt"
