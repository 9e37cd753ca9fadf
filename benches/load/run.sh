#!/usr/bin/env bash
# Load benchmark of POST /auth/login in its four body formats, against the
# floor route POST /bench/floor, with wrk on this machine.
#
#   bash benches/load/run.sh [--database-url URL] [--duration SECONDS]
#       [--warm-up SECONDS] [--repeats N] [--connections N] [--threads N]
#       [--algorithms "HS256 EdDSA"] [--targets "json ... floor plain"]
#       [--port PORT] [--report PATH]
#
# It builds the release binary with the `bench-floor` feature, checks that
# the default release build returns 404 on the floor route, and then, for
# each algorithm, repeat and target, starts a fresh server on 127.0.0.1
# with a fresh store and one signal, warms it up, and measures one wrk run.
# Logging (to a file), metrics and rate limits stay on as in production.
# With HS256 it also measures the plain peer (benches/load/plain_peer.rs).
# Needs cargo, wrk (Debian: apt-get install wrk), curl and awk.
#
# Without --database-url, each run gets a new SQLite file in a temporary
# folder. With it (or NEXUS_AUTH_BENCH_DATABASE_URL), every run uses that
# store and recreates the signal `load-signal` in it.
#
# Writes target/bench-reports/load.md: the medians per configuration, the
# targets, and every run.
set -euo pipefail
cd "$(dirname "$0")/../.."

database_url="${NEXUS_AUTH_BENCH_DATABASE_URL:-}"
duration=10
warm_up=2
repeats=3
connections=64
threads=2
algorithms="HS256 EdDSA"
# Empty means every target: the four formats, the floor, and with HS256 the
# plain peer.
only_targets=""
port=18431
report=target/bench-reports/load.md

usage() {
  sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
  exit "$1"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --database-url) database_url="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --warm-up) warm_up="$2"; shift 2 ;;
    --repeats) repeats="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --algorithms) algorithms="$2"; shift 2 ;;
    --targets) only_targets="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --report) report="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option $1; see --help" >&2; exit 2 ;;
  esac
done

for tool in cargo wrk curl awk; do
  if ! command -v "$tool" >/dev/null; then
    echo "$tool is missing; install it (wrk: apt-get install wrk)" >&2
    exit 1
  fi
done

work="$(mktemp -d)"
server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT

base="http://127.0.0.1:$port"
if curl -s -o /dev/null "$base/healthz"; then
  echo "something already listens on 127.0.0.1:$port; pick another --port" >&2
  exit 1
fi

# --- Binaries ---------------------------------------------------------------

echo "building the release binary with the bench-floor feature"
cargo build --release --features bench-floor --bin nexus-auth --bin plain-peer
cp target/release/nexus-auth "$work/nexus-auth-bench"
cp target/release/plain-peer "$work/plain-peer"
echo "building the default release binary"
cargo build --release --bin nexus-auth
cp target/release/nexus-auth "$work/nexus-auth-default"

# --- Credentials and bodies ---------------------------------------------------

# The id is the one the floor sizes its body for (FLOOR_SIGNAL_ID).
signal_id=load-signal
# A fresh token shaped like a generated one: base64url, so that it needs
# no escaping in any of the four formats. It lives only in $work.
signal_token="sgt_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
printf '%s' "HS256 bench secret $(head -c 48 /dev/urandom | base64 | tr -d '\n')" \
  >"$work/hs256.secret"

boundary=------------------------load4f8b9c2d7e1a
printf '{"signalId":"%s","signalToken":"%s"}' "$signal_id" "$signal_token" >"$work/json.body"
printf -- '--%s\r\nContent-Disposition: form-data; name="signalId"\r\n\r\n%s\r\n--%s\r\nContent-Disposition: form-data; name="signalToken"\r\n\r\n%s\r\n--%s--\r\n' \
  "$boundary" "$signal_id" "$boundary" "$signal_token" "$boundary" >"$work/multipart.body"
printf 'signalId=%s&signalToken=%s' "$signal_id" "$signal_token" >"$work/text.body"
cp "$work/text.body" "$work/form.body"
cp "$work/json.body" "$work/floor.body"
cp "$work/json.body" "$work/plain.body"

content_type() {
  case "$1" in
    json|floor|plain) echo "application/json" ;;
    multipart) echo "multipart/form-data; boundary=$boundary" ;;
    text) echo "text/plain; charset=utf-8" ;;
    form) echo "application/x-www-form-urlencoded" ;;
  esac
}

path_of() {
  case "$1" in
    floor) echo "/bench/floor" ;;
    *) echo "/auth/login" ;;
  esac
}

# --- Server -------------------------------------------------------------------

# Starts $1 (a binary) with algorithm $2 on a fresh store and the signal.
start_server() {
  local binary="$1" algorithm="$2" run_name="$3"
  local url="$database_url"
  if [ -z "$url" ]; then
    url="sqlite://$work/$run_name.db"
  else
    "$binary" signals delete "$signal_id" --database-url "$url" >/dev/null 2>&1 || true
  fi
  printf '%s' "$signal_token" |
    "$binary" signals create "$signal_id" --token-stdin --database-url "$url" >/dev/null 2>>"$work/cli.log"

  local algorithm_flags=(--signing-alg "$algorithm")
  if [ "$algorithm" = HS256 ]; then
    algorithm_flags+=(--hs256-secret-file "$work/hs256.secret")
  fi
  "$binary" serve --bind "127.0.0.1:$port" --database-url "$url" --no-bootstrap \
    "${algorithm_flags[@]}" 2>>"$work/server-$run_name.log" &
  server_pid=$!
  wait_for_server "$work/server-$run_name.log"
}

# Waits up to 10 s for the port to accept HTTP requests; on failure prints
# the log file $1 and exits.
wait_for_server() {
  for _ in $(seq 100); do
    if curl -s -o /dev/null "$base/"; then
      return 0
    fi
    sleep 0.1
  done
  echo "the server did not start; its log:" >&2
  cat "$1" >&2
  exit 1
}

# Starts the plain peer, which takes the JSON login only, with HS256.
start_plain() {
  "$work/plain-peer" "127.0.0.1:$port" "$signal_id" "$signal_token" "$work/hs256.secret" \
    2>>"$work/plain-peer.log" &
  server_pid=$!
  wait_for_server "$work/plain-peer.log"
}

# Prints the CPU time (user + system) of process $1, in clock ticks. The
# command name in field 2 may hold spaces, so fields count from after ')'.
cpu_ticks() {
  awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

peak_rss_kib() {
  awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

# Prints the sum of the samples of metric $1 on /metrics.
metric_sum() {
  curl -s "$base/metrics" | awk -v name="$1" '$1 ~ "^" name "([{]|$)" { sum += $2 } END { print sum + 0 }'
}

# --- The floor route is absent by default -------------------------------------

start_server "$work/nexus-auth-default" EdDSA default-check
floor_status="$(curl -s -o /dev/null -w '%{http_code}' -X POST \
  -H 'Content-Type: application/json' --data-binary "@$work/floor.body" "$base/bench/floor")"
stop_server
if [ "$floor_status" != 404 ]; then
  echo "the default build returned $floor_status for POST /bench/floor; expected 404" >&2
  exit 1
fi
echo "default build: POST /bench/floor -> 404"

# --- Runs ---------------------------------------------------------------------

clock_ticks="$(getconf CLK_TCK)"
# Prints the targets measured with algorithm $1: the plain peer signs
# with HS256 only, and --targets narrows the list.
targets_of() {
  local all="json multipart text form floor"
  [ "$1" = HS256 ] && all="$all plain"
  local target
  for target in $all; do
    if [ -z "$only_targets" ] || [[ " $only_targets " == *" $target "* ]]; then
      printf '%s ' "$target"
    fi
  done
}
results="$work/results.tsv"
: >"$results"
declare -A body_bytes

for algorithm in $algorithms; do
  for repeat in $(seq "$repeats"); do
    # Targets take turns within a repeat, so that slow drift of the
    # machine hits them alike.
    for target in $(targets_of "$algorithm"); do
      run_name="$algorithm-$target-$repeat"
      if [ "$target" = plain ]; then
        start_plain
      else
        start_server "$work/nexus-auth-bench" "$algorithm" "$run_name"
      fi
      type="$(content_type "$target")"
      url="$base$(path_of "$target")"

      status="$(curl -s -o "$work/response" -w '%{http_code}' -X POST \
        -H "Content-Type: $type" --data-binary "@$work/$target.body" "$url")"
      if [ "$status" != 200 ]; then
        echo "$run_name: the first request got $status: $(cat "$work/response")" >&2
        exit 1
      fi
      body_bytes[$algorithm-$target]="$(wc -c <"$work/response")"

      wrk -t "$threads" -c "$connections" -d "${warm_up}s" -s benches/load/post.lua \
        "$url" -- "$work/$target.body" "$type" >/dev/null
      load="$(cut -d ' ' -f 1 /proc/loadavg)"
      before="$(cpu_ticks "$server_pid")"
      wrk -t "$threads" -c "$connections" -d "${duration}s" -s benches/load/post.lua \
        "$url" -- "$work/$target.body" "$type" >"$work/wrk.out"
      after="$(cpu_ticks "$server_pid")"
      rss="$(peak_rss_kib "$server_pid")"
      limited="$(metric_sum nexus_auth_rate_limited_total)"
      stop_server

      line="$(grep '^RESULT ' "$work/wrk.out")" || {
        echo "$run_name: wrk printed no result:" >&2
        cat "$work/wrk.out" >&2
        exit 1
      }
      # RESULT requests=N duration_us=N non_2xx=N socket_errors=N p50_us=N p99_us=N
      read -r requests duration_us non_2xx socket_errors p50 p99 < <(
        echo "$line" | awk '{ for (i = 2; i <= NF; i++) { split($i, pair, "="); printf "%s ", pair[2] } print "" }'
      )
      awk -v a="$algorithm" -v t="$target" -v r="$repeat" -v n="$requests" -v d="$duration_us" \
        -v bad="$non_2xx" -v sock="$socket_errors" -v p50="$p50" -v p99="$p99" \
        -v cpu="$((after - before))" -v hz="$clock_ticks" -v rss="$rss" -v lim="$limited" -v loadavg="$load" \
        'BEGIN { printf "%s\t%s\t%s\t%.0f\t%d\t%d\t%d\t%d\t%.1f\t%d\t%d\t%s\n",
                 a, t, r, n / (d / 1e6), p50, p99, bad, sock, cpu * 1e6 / hz / n, rss, lim, loadavg }' \
        >>"$results"
      printf '%s: %s\n' "$run_name" "$(tail -n 1 "$results" | cut -f 4-)"
    done
  done
done

# --- Report -------------------------------------------------------------------

# Columns of results.tsv: algorithm, target, repeat, requests/s, p50 µs,
# p99 µs, non-2xx, socket errors, CPU µs per request, peak RSS KiB,
# 429s counted by the server, load average before the run.
median() {
  awk -F '\t' -v a="$1" -v t="$2" -v c="$3" '$1 == a && $2 == t { print $c }' "$results" |
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

column_max() {
  awk -F '\t' -v a="$1" -v t="$2" -v c="$3" '$1 == a && $2 == t && $c > m { m = $c } END { print m + 0 }' "$results"
}

# Median time of `cargo bench --bench tokens`'s sign/ALG, in µs, if it
# ran. The median rather than the mean, because other work on the machine
# lengthens a few samples a lot.
sign_micros() {
  local file="target/criterion/sign/$1/new/estimates.json"
  if [ -f "$file" ]; then
    tr -d ' \n' <"$file" |
      sed 's/.*"median":{"confidence_interval":{[^}]*},"point_estimate":\([0-9.e+-]*\).*/\1/' |
      awk '{ printf "%.1f", $1 / 1000 }'
  fi
}

mkdir -p "$(dirname "$report")"
{
  echo "# Load benchmark"
  echo
  echo "\`bash benches/load/run.sh\`: wrk $(wrk --version 2>&1 | awk 'NR == 1 { print $2 }'), $threads threads," \
    "$connections connections, ${duration} s per run after ${warm_up} s of warm-up, $repeats runs per" \
    "configuration (medians below), on $(nproc) cores shared by the server and wrk." \
    "Store: ${database_url:+the given database URL}${database_url:-a fresh SQLite file per run}." \
    "Logging (info, to a file), metrics and rate limits on. A fresh server per run."
  echo
  echo "Default build: \`POST /bench/floor\` returned $floor_status."
  echo
  for algorithm in $algorithms; do
    floor_rps="$(median "$algorithm" floor 4)"
    floor_cpu="$(median "$algorithm" floor 9)"
    echo "## $algorithm"
    echo
    echo "| target | requests/s | / floor | p50 (ms) | p99 (ms) | non-2xx | CPU µs/request | peak RSS (MiB) | 200 body (bytes) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for target in $(targets_of "$algorithm"); do
      rps="$(median "$algorithm" "$target" 4)"
      awk -v t="$target" -v rps="$rps" -v floor="$floor_rps" \
        -v p50="$(median "$algorithm" "$target" 5)" -v p99="$(median "$algorithm" "$target" 6)" \
        -v bad="$(column_max "$algorithm" "$target" 7)" -v sock="$(column_max "$algorithm" "$target" 8)" \
        -v cpu="$(median "$algorithm" "$target" 9)" -v rss="$(column_max "$algorithm" "$target" 10)" \
        -v size="${body_bytes[$algorithm-$target]}" \
        'BEGIN { share = floor > 0 ? sprintf("%.3f", rps / floor) : "-";
                 printf "| %s | %.0f | %s | %.2f | %.2f | %d (+%d socket) | %.1f | %.1f | %s |\n",
                 t, rps, share, p50 / 1000, p99 / 1000, bad, sock, cpu, rss / 1024, size }'
    done
    echo
    echo "Non-2xx and socket errors are the maximum over the runs; peak RSS is the largest VmHWM."
    echo

    echo "Targets:"
    echo
    logins="$(targets_of "$algorithm" | sed 's/floor//; s/plain//')"
    if [ -z "$floor_rps" ]; then
      echo "- Ratios to the floor: the floor was not measured."
    elif [ "$algorithm" = HS256 ]; then
      for target in $logins; do
        need=85
        [ "$target" = json ] && need=90
        awk -v t="$target" -v rps="$(median "$algorithm" "$target" 4)" -v floor="$floor_rps" -v need="$need" \
          'BEGIN { share = 100 * rps / floor; printf "- %s: %.1f %% of the floor (target >= %d %%): %s\n",
                   t, share, need, share >= need ? "met" : "missed" }'
      done
    elif [ "$algorithm" = EdDSA ]; then
      sign="$(sign_micros "$algorithm")"
      if [ -z "$sign" ]; then
        echo "- CPU per login against floor + signing + 3 µs: run \`cargo bench --bench tokens\` first for the signing cost."
      fi
      for target in ${sign:+$logins}; do
        awk -v t="$target" -v cpu="$(median "$algorithm" "$target" 9)" -v floor="$floor_cpu" -v sign="$sign" \
          'BEGIN { limit = floor + sign + 3; printf "- %s: %.1f µs CPU per login, floor %.1f + signing %.1f + 3 = %.1f: %s\n",
                   t, cpu, floor, sign, limit, cpu <= limit ? "met" : "missed" }'
      done
    fi
    for target in $(targets_of "$algorithm"); do
      awk -v t="$target" -v p99="$(median "$algorithm" "$target" 6)" \
        -v bad="$(column_max "$algorithm" "$target" 7)" -v sock="$(column_max "$algorithm" "$target" 8)" \
        -v rss="$(column_max "$algorithm" "$target" 10)" -v lim="$(column_max "$algorithm" "$target" 11)" \
        'BEGIN { ok = p99 < 5000 && bad == 0 && sock == 0 && rss < 32 * 1024 && lim == 0;
                 printf "- %s: p99 %.2f ms, %d non-2xx, %d socket errors, %d rate-limited, peak RSS %.1f MiB: %s\n",
                 t, p99 / 1000, bad, sock, lim, rss / 1024, ok ? "met" : "missed" }'
    done
    echo
  done

  echo "## Every run"
  echo
  echo "| algorithm | target | run | requests/s | p50 (µs) | p99 (µs) | non-2xx | socket errors | CPU µs/request | peak RSS (KiB) | 429s | load average before |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  awk -F '\t' '{ printf "| %s |\n", $1 " | " $2 " | " $3 " | " $4 " | " $5 " | " $6 " | " $7 " | " $8 " | " $9 " | " $10 " | " $11 " | " $12 }' "$results"
} >"$report"

cat "$report"
echo
echo "written to $report"
