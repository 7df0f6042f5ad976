#!/bin/sh
# sim/hostfile.sh P L > FILE: the smpirun hostfile placing P ranks L per host, consecutively
# (ranks 0..L-1 on node-0, ...), the way mpirun --map-by node:PE fills real nodes.
p=$1 l=${2:-1}
i=0
while [ "$i" -lt "$p" ]; do echo "node-$((i / l))"; i=$((i + 1)); done
