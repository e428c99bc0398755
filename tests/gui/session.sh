#!/bin/sh
# Inside the GUI chroot (harness.run_session): a virtual screen, the add-on's zip (/gui/addon.zip)
# installed once with Blender's own installer, then Blender in a window driven by driver.py.
#   session.sh SCENARIO      (results in /gui/SCENARIO/)
set -eu
scenario=$1
out=/gui/$scenario
export DISPLAY=:99
Xvfb :99 -screen 0 "${STYLIZE_GUI_SCREEN}x24" -nolisten tcp >"$out/xvfb.log" 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null || true' EXIT
i=0
until [ -e /tmp/.X11-unix/X99 ]; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "Xvfb did not start"; cat "$out/xvfb.log"; exit 1; }
    sleep 0.1
done
mkdir -p "$HOME"
if [ ! -e "$HOME/installed" ]; then
    start=$(date +%s%N)
    blender --command extension install-file -r user_default -e /gui/addon.zip >/gui/install.log 2>&1 \
        || { cat /gui/install.log; exit 1; }
    echo "installed in $(( ($(date +%s%N) - start) / 1000000 )) ms" | tee "$HOME/installed"
fi
blender -p 0 0 ${STYLIZE_GUI_SCREEN%x*} ${STYLIZE_GUI_SCREEN#*x} --python /gui/driver.py -- "$scenario" \
    >"$out/blender.log" 2>&1 || { echo "blender exited with $?"; exit 1; }
