#!/usr/bin/env bash
# The README's first command: on a fresh Debian 12 machine (as root, or with sudo for apt), set
# everything up and run pioreactord in the foreground on a simulated culture, with demo jobs.
# Everything lives in ./.demo (config, sockets, database, logs, plugins). Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD/.demo
sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo

if ! command -v mosquitto >/dev/null && [[ ! -x /usr/sbin/mosquitto ]]; then
  echo "==> installing mosquitto and python3-venv (apt)"
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto python3-venv >/dev/null
fi
if [[ ! -x .venv/bin/pioreactord ]]; then
  echo "==> creating .venv and installing pioreactord"
  /usr/bin/python3 -m venv .venv
  .venv/bin/pip install -q -e .
fi
mkdir -p "$root/plugins"
cp examples/*.py "$root/plugins/" 2>/dev/null || true

port=1883
if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
  echo "==> using the broker already listening on localhost:$port"
else
  port=18830
  printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$root/mosquitto.conf"
  # Its own session: Ctrl-C (SIGINT to the terminal's process group) must reach the daemon, which
  # stops its jobs through this broker, not the broker itself (mosquitto handles SIGINT).
  setsid "$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$root/mosquitto.conf" >"$root/mosquitto.log" 2>&1 &
  broker_pid=$!
  trap 'kill $broker_pid 2>/dev/null || true' EXIT
  echo "==> started a demo broker on localhost:$port"
fi

cat > "$root/pioreactord.ini" <<INI
$(sed -e "s#^runtime_dir = .*#runtime_dir = $root/run#" \
      -e "s#^state_dir = .*#state_dir = $root/state#" \
      -e "s#^plugins_dir = .*#plugins_dir = $root/plugins#" \
      -e "s#^hardware = .*#hardware = simulated#" \
      -e "s#^broker_port = .*#broker_port = $port#" \
      -e "s#^database = .*#database = $root/state/pioreactord.sqlite#" \
      -e "s#^log_file = .*#log_file = $root/log/pioreactord.log#" \
      -e "s#^unit =.*#unit = demo#" \
      -e "s#^2 = media#2 = air_pump#" \
      -e "s#^interval = 5#interval = 1#" \
      -e "s#^initial_rate_std = .*#initial_rate_std = 100#" \
      etc/pioreactord.ini)

[simulation]
; one hour of culture growth per minute, so the demo shows growth at once
time_scale = 60
seed = 7

[air_pump]
; examples/air_pump.py: duty cycle at the starting OD, and the PWM frequency
base_duty_cycle = 10
hz = 200
INI
export PIOREACTORD_CONFIG=$root/pioreactord.ini PATH=$PWD/.venv/bin:$PATH

demo_jobs() {
  for _ in $(seq 100); do pioctl status >/dev/null 2>&1 && break; sleep 0.1; done
  for job in od_reading growth_rate_calculating stirring air_pump; do
    pioctl start $job || true
  done
  cat <<MSG

==> pioreactord is running with demo jobs on a simulated culture. In another terminal:
      export PIOREACTORD_CONFIG=$root/pioreactord.ini PATH=$PWD/.venv/bin:\$PATH
      pioctl status                          # jobs, states, settings
      pioctl mqtt -t 'pioreactor/#'          # every message on the broker
      pioctl set stirring target_rpm 800     # change a setting
      pioctl logs -f                         # the log
    Ctrl-C here stops every job cleanly, then the daemon.
MSG
}
demo_jobs &
pioreactord --config "$root/pioreactord.ini"
