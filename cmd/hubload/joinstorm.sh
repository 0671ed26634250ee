#!/usr/bin/env bash
# joinstorm.sh N PRESENCE (binaries hubd and hubload in $D, default /tmp/i14b): a fresh hubd, one session, N joins at once (hubload
# --idle --ramp 0); prints hubd's bytes written (/proc/PID/io wchar) and CPU
# (utime+stime) from before the first connect until a second of hubload's
# window receives nothing (the joins' fan-out delivered; no leaves), and
# hubload's join p50/p99.
set -euo pipefail
N=$1; P=$2; PORT=${PORT:-18715}; D=${D:-/tmp/i14b}
$D/hubd --addr 127.0.0.1:$PORT --log-level warn --max-participants 2000 > $D/hubd-$N-$P.log 2>&1 &
HP=$!
for i in $(seq 50); do curl -sf 127.0.0.1:$PORT/healthz >/dev/null && break; sleep 0.1; done
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' /proc/$HP/stat; }
w0=$(awk '/^wchar/{print $2}' /proc/$HP/io); c0=$(cpu)
rm -f $D/load-$N-$P.out $D/load-$N-$P.err
$D/hubload --url ws://127.0.0.1:$PORT/ws --sessions 1 --clients $N --idle --presence $P --duration 20s --warmup 0s --drain 2s --json --session-prefix storm > $D/load-$N-$P.out 2>$D/load-$N-$P.err &
LP=$!
# The storm is over when a second of the window receives nothing.
until grep -qE 'measure .*recv/s 0 ' $D/load-$N-$P.err 2>/dev/null || ! kill -0 $LP 2>/dev/null; do sleep 0.05; done
grep -qE 'measure .*recv/s 0 ' $D/load-$N-$P.err || echo "warning: sampled at hubload's exit (leaves included)" >&2
w1=$(awk '/^wchar/{print $2}' /proc/$HP/io); c1=$(cpu)
wait $LP
kill $HP; wait $HP 2>/dev/null || true
python3 - "$N" "$P" "$w0" "$w1" "$c0" "$c1" "$tick" $D/load-$N-$P.out <<'PY'
import json,sys
n,p,w0,w1,c0,c1,tick,f=sys.argv[1:]
s=json.load(open(f))
c=s['connect']
print(f"{n:>5} joins {p:<4}: hubd wrote {(int(w1)-int(w0))/1e6:9.1f} MB, CPU {(float(c1)-float(c0))/float(tick):6.2f} s; joins ok {c['ok']}/{c['attempted']}; join p50 {c['joinP50Ms']:.0f} ms, p99 {c['joinP99Ms']:.0f} ms; closed by the hub {s.get('closeCodes') or 'none'}")
PY
