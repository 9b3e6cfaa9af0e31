#!/usr/bin/env bash
# Headless Chromium for the browser test (`make site-test`), installed with apt on a machine that lacks it.
#   tools/browser.sh start   start the install in the background (no-op if Chromium is there or an install runs)
#   tools/browser.sh wait    wait for that install (or install now if none was started); fail with its log if it failed
# `make test` calls `start` first, so the ~1 min of apt (mostly download and unpacking) overlaps the unit tests and
# the chapters' quick run instead of adding to the wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=book/_build/browser-install
have() { command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null; }
install() { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

case "${1:-}" in
  start)
    have && exit 0
    mkdir -p "$DIR"
    if [ -f "$DIR/pid" ] && kill -0 "$(cat "$DIR/pid")" 2>/dev/null; then exit 0; fi
    rm -f "$DIR/rc"
    echo "browser: installing Chromium in the background (log: $DIR/log)"
    setsid nohup bash -c "$(declare -f install); install > '$DIR/log' 2>&1; echo \$? > '$DIR/rc'" \
      > /dev/null 2>&1 < /dev/null &
    echo $! > "$DIR/pid"
    ;;
  wait)
    if [ -f "$DIR/pid" ] && ! have; then
      while kill -0 "$(cat "$DIR/pid")" 2>/dev/null; do sleep 1; done
      rm -f "$DIR/pid"
      if ! have; then
        echo "browser: the background install of Chromium failed (exit $(cat "$DIR/rc" 2>/dev/null || echo '?')):"
        tail -20 "$DIR/log" 2>/dev/null || true
        exit 1
      fi
    fi
    have || install > /dev/null
    have || { echo "browser: Chromium is needed for the browser test (Debian package 'chromium')"; exit 1; }
    ;;
  *) echo "usage: tools/browser.sh start|wait"; exit 2 ;;
esac
