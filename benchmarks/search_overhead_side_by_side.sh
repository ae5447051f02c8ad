#!/bin/bash
cd /work/main
for round in 1 2; do
  PYTHONPATH=/tmp/nasconv_old .venv/bin/python /tmp/nasconv_old/benchmarks/search_overhead.py --repeats 3 --no-profile --variants inline,plain-memory --default-trial-s 23.1 --out /tmp/b_old_$round > /tmp/b_old_$round.log 2>&1
  .venv/bin/python benchmarks/search_overhead.py --repeats 3 --no-profile --variants inline,plain-memory --default-trial-s 23.1 --out /tmp/b_new_$round > /tmp/b_new_$round.log 2>&1
done
