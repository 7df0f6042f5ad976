#!/bin/sh
# Mixed precision's bad flags and combinations (issue 17; docs/MIXED_PRECISION.md) are refused
# before any work with one message, every rank exiting with 2 (tests/lib.sh expect_error).
. "${srcdir:-.}/tests/lib.sh"
need_data
# Refused before any work, one message, every rank exits non-zero (tests/lib.sh expect_error).
m="--data $DATA --model mlp:784-32-10 --max-steps 2"
expect_error prec-bad 2 "unknown --precision 'fp8'" train $m --precision fp8
expect_error ls-garbage 2 "bad --loss-scale 'garbage'" train $m --precision fp16 --loss-scale garbage
expect_error ls-negative 2 "bad --loss-scale '-4'" train $m --precision fp16 --loss-scale -4
expect_error ls-bf16 2 "loss scaling is for fp16" train $m --precision bf16 --loss-scale 1024
expect_error ls-fp32 2 "loss scaling is for fp16" train $m --loss-scale dynamic
expect_error ls-window 2 "loss-scale-window" train $m --precision fp16 --loss-scale-window 0
expect_error prec-repro 2 "reproducible with --precision bf16" train $m --precision bf16 --reproducible true
expect_error prec-ps 2 "not supported with the parameter server" train $m --precision fp16 --ps-servers 1
expect_error prec-topk 2 "compress topk:0.01 keeps per-rank state" train $m --precision fp16 --compress topk:0.01
expect_error prec-cuda 2 "cuda backend has no low-precision kernels" train $m --precision bf16 --backend cuda
pass "bad precision combinations are refused with one message"
