#!/bin/sh
# tests/test_precision.sh in fp16 (dynamic loss scaling, the default): every model trains at 1
# and 2 ranks, the same levels and tolerances.
PREC=fp16
. "${srcdir:-.}/tests/test_precision.sh"
