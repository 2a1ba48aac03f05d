#!/usr/bin/env bash
# Builds the README's topology: host A and host B in their own namespaces,
# joined by veth pairs to namespace sn-r where softnet runs.
#   bash examples/netns.sh up      # create
#   bash examples/netns.sh down    # remove
set -euo pipefail
case "${1:-}" in
up)
    for ns in sn-a sn-b sn-r; do ip netns add "$ns"; done
    ip link add sn-a0 netns sn-a type veth peer name sn-r0 netns sn-r
    ip link add sn-b0 netns sn-b type veth peer name sn-r1 netns sn-r
    ip -n sn-a addr add 10.0.1.2/24 dev sn-a0
    ip -n sn-b addr add 10.0.2.2/24 dev sn-b0
    for ns in sn-a sn-b sn-r; do ip -n "$ns" link set lo up; done
    ip -n sn-a link set sn-a0 up
    ip -n sn-b link set sn-b0 up
    ip -n sn-a route add default via 10.0.1.1
    ip -n sn-b route add default via 10.0.2.1
    # The router's ends carry no kernel addresses: softnet answers for
    # 10.0.1.1 and 10.0.2.1 itself. IPv6 off so the kernel stays quiet.
    for dev in sn-r0 sn-r1; do
        ip netns exec sn-r sysctl -qw "net.ipv6.conf.$dev.disable_ipv6=1"
        ip -n sn-r link set "$dev" up
    done
    echo "topology up: run softnet with: ip netns exec sn-r softnet up -c examples/softnet.toml"
    ;;
down)
    for ns in sn-a sn-b sn-r; do ip netns del "$ns" 2>/dev/null || true; done
    ;;
*)
    echo "usage: $0 up|down" >&2
    exit 1
    ;;
esac
