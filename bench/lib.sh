# Shared by bench/vs_kernel.sh and bench/ipi.sh (sourced, after $repo is set):
# the softnet binary, and the "xdp" mode's topology and NAPI placement.
bin=${SOFTNET_BIN:-$repo/target/release/softnet}
[ -x "$bin" ] || (cd "$repo" && cargo build --release --bins)

# "xdp" runs in the "user" topology (bare veth ends), attached with AF_XDP.
topo_of() { if [ "$1" = xdp ]; then echo user; else echo "$1"; fi; }
# With native XDP the veth's NAPI runs on the sending CPU (the generator's):
# make it a thread and pin that to the router's CPU, so the router CPU pays
# for it (../shared/bench README, "AF_XDP").
napi_to_router_cpu() {
    [ "$1" = xdp ] || return 0
    for dev in sn-r0 sn-r1; do
        ip netns exec sn-r sh -c "echo 1 > /sys/class/net/$dev/threaded"
    done
    sleep 0.5
    ps -eo pid=,comm= | awk '$2 ~ /^napi\/sn-r/ { print $1 }' | while read -r p; do taskset -pc 1 "$p" >/dev/null; done
}
