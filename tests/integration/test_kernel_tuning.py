"""The appliance's kernel tuning (kernel-tuning/), outside a VM: ironsight-tune run against
fake /sys and /proc trees shaped like machines it must handle (one CPU; a small VM; a 36-CPU
server whose card has four queues; an operator's fixed layout, good and bad), and the sysctl
drop-in checked against the running kernel. The quick boot (test_quick_boot.py) runs the same
script on a real kernel.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from broker import Broker

REPO = Path(__file__).resolve().parents[2]
TUNE = REPO / "kernel-tuning" / "ironsight-tune"
SYSCTL = REPO / "kernel-tuning" / "90-ironsight.conf"


def machine(root: Path, cpus: str, queues: int = 1, irqs: tuple[int, ...] = (24,),
            mem_kib: int = 16 * 1024 * 1024) -> Path:
    """A fake machine: `cpus` online, one PCI network card eth0 with `queues` receive and
    transmit queues and MSI vectors `irqs`, each with its /proc/irq affinity file."""
    sys_, proc = root / "sys", root / "proc"
    (sys_ / "devices/system/cpu").mkdir(parents=True)
    (sys_ / "devices/system/cpu/online").write_text(cpus + "\n")
    card = sys_ / "devices/pci0000:00/0000:00:03.0"
    (card / "msi_irqs").mkdir(parents=True)
    for irq in irqs:
        (card / "msi_irqs" / str(irq)).write_text("msix\n")
        (proc / "irq" / str(irq)).mkdir(parents=True)
        (proc / "irq" / str(irq) / "smp_affinity_list").write_text(cpus + "\n")
    net = sys_ / "class/net/eth0"
    net.mkdir(parents=True)
    (net / "device").symlink_to(card)
    for q in range(queues):
        (net / f"queues/rx-{q}").mkdir(parents=True)
        (net / f"queues/rx-{q}/rps_cpus").write_text("00000000\n")
        (net / f"queues/tx-{q}").mkdir(parents=True)
        (net / f"queues/tx-{q}/xps_cpus").write_text("00000000\n")
    (sys_ / "class/net/lo").mkdir(parents=True)  # no device: left alone
    (proc / "sys/net/ipv4").mkdir(parents=True)
    (proc / "sys/net/ipv4/tcp_mem").write_text("1 2 3\n")
    (proc / "meminfo").write_text(f"MemTotal:       {mem_kib} kB\nMemFree: 1 kB\n")
    return root


def tune(root: Path, conf: str | None = None) -> tuple[str, dict]:
    """Runs ironsight-tune on the fake machine (optionally with a cpu-layout.conf); returns
    what it printed and the layout file it wrote."""
    conf_path = root / "cpu-layout.conf"
    if conf is not None:
        conf_path.write_text(conf)
    env = {"PATH": "/usr/bin:/bin", "SYS": str(root / "sys"), "PROC": str(root / "proc"),
           "LAYOUT_CONF": str(conf_path), "LAYOUT_OUT": str(root / "run/cpu-layout.env")}
    done = subprocess.run(["sh", str(TUNE)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    layout = dict(line.split("=", 1) for line in
                  (root / "run/cpu-layout.env").read_text().splitlines()
                  if "=" in line and not line.startswith("#"))
    return done.stdout, layout


def read(root: Path, rel: str) -> str:
    return (root / rel).read_text().strip()


def test_a_single_cpu_is_shared(tmp_path):
    """Proves one CPU is both housekeeping and the shard's, and the card stays on it."""
    root = machine(tmp_path, "0")
    out, layout = tune(root)
    assert layout == {"IRONSIGHT_CORES": "0-0", "IRONSIGHT_HOUSEKEEPING": "0"}, out
    assert read(root, "proc/irq/24/smp_affinity_list") == "0"
    assert read(root, "sys/class/net/eth0/queues/rx-0/rps_cpus") == "00000001"
    assert "one transmit queue" in out


def test_a_two_cpu_vm_puts_its_shard_on_the_second_cpu(tmp_path):
    """Proves the layout of a two-CPU VM keeps the shard off the card's CPU: the broker,
    given the layout's IRONSIGHT_CORES as the appliance's unit gives it, pins its one shard
    to CPU 1 (a bare "1" would be read as one core, CPU 0). This machine has two CPUs."""
    root = machine(tmp_path / "vm", "0-1")
    out, layout = tune(root)
    assert layout == {"IRONSIGHT_CORES": "1-1", "IRONSIGHT_HOUSEKEEPING": "0"}, out
    b = Broker(tmp_path, env={"IRONSIGHT_CORES": layout["IRONSIGHT_CORES"],
                              "IRONSIGHT_LOG": "info"})
    b.start()
    try:
        [started] = b.wait_log(r"starting shards=(\d+) cpus=\[([\d, ]*)\]")
        assert started.groups() == ("1", "1"), started.group(0)
    finally:
        b.stop()


def test_a_small_vm_gives_its_first_cpu_to_the_card(tmp_path):
    """Proves four CPUs with a one-queue card: CPU 0 takes the interrupts and RPS, the shards
    get 1-3, and tcp_mem is an eighth, a quarter and a half of memory in pages."""
    root = machine(tmp_path, "0-3", mem_kib=8 * 1024 * 1024)
    out, layout = tune(root)
    assert layout == {"IRONSIGHT_CORES": "1,2,3", "IRONSIGHT_HOUSEKEEPING": "0"}, out
    assert read(root, "proc/irq/24/smp_affinity_list") == "0"
    assert read(root, "sys/class/net/eth0/queues/rx-0/rps_cpus") == "00000001"
    pages = 8 * 1024 * 1024 // 4
    assert read(root, "proc/sys/net/ipv4/tcp_mem") == f"{pages // 8} {pages // 4} {pages // 2}"


def test_a_server_with_a_multi_queue_card(tmp_path):
    """Proves 36 CPUs and a card with four queues: three housekeeping CPUs (one per sixteen)
    take every vector and every queue's RPS; the 33 shard CPUs are spread round robin over the
    four transmit queues (XPS), each shard CPU on exactly one, housekeeping's first on tx-0."""
    root = machine(tmp_path, "0-35", queues=4, irqs=(40, 41, 42, 43, 44))
    out, layout = tune(root)
    assert layout["IRONSIGHT_HOUSEKEEPING"] == "0,1,2", out
    assert layout["IRONSIGHT_CORES"] == ",".join(str(c) for c in range(3, 36))
    for irq in (40, 41, 42, 43, 44):
        assert read(root, f"proc/irq/{irq}/smp_affinity_list") == "0,1,2"
    for q in range(4):
        assert read(root, f"sys/class/net/eth0/queues/rx-{q}/rps_cpus") == "00000007"
    owners: dict[int, int] = {}
    for q in range(4):
        words = read(root, f"sys/class/net/eth0/queues/tx-{q}/xps_cpus").split(",")
        bits = int("".join(words), 16)
        for cpu in range(36):
            if bits >> cpu & 1:
                assert cpu not in owners, f"CPU {cpu} on tx-{owners[cpu]} and tx-{q}"
                owners[cpu] = q
    assert sorted(owners) == [0] + list(range(3, 36)), owners
    assert owners[0] == 0 and owners[3] == 0 and owners[4] == 1 and owners[7] == 0
    assert "4 transmit queues" in out


def test_the_operators_layout_wins(tmp_path):
    """Proves HOUSEKEEPING_CPUS in cpu-layout.conf is used as given."""
    root = machine(tmp_path, "0-7")
    out, layout = tune(root, "HOUSEKEEPING_CPUS=0-1\n")
    assert layout == {"IRONSIGHT_CORES": "2,3,4,5,6,7", "IRONSIGHT_HOUSEKEEPING": "0-1"}, out
    assert read(root, "proc/irq/24/smp_affinity_list") == "0-1"
    assert read(root, "sys/class/net/eth0/queues/rx-0/rps_cpus") == "00000003"


def test_a_layout_naming_an_offline_cpu_is_refused(tmp_path):
    """Proves a layout that names a CPU the machine does not have is reported and the default
    used instead, rather than leaving the broker without CPUs."""
    root = machine(tmp_path, "0-3")
    out, layout = tune(root, "HOUSEKEEPING_CPUS=9\n")
    assert "HOUSEKEEPING_CPUS names CPU 9, which is not online (0-3)" in out
    assert layout == {"IRONSIGHT_CORES": "1,2,3", "IRONSIGHT_HOUSEKEEPING": "0"}


def sysctl_lines() -> list[tuple[bool, str, str]]:
    """(optional, key, value) of every setting in the drop-in."""
    lines = []
    for line in SYSCTL.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        lines.append((key.startswith("-"), key.lstrip("-"), value))
    return lines


@pytest.mark.parametrize("optional,key,value", sysctl_lines(), ids=lambda v: str(v))
def test_every_sysctl_exists_on_this_kernel(optional, key, value):
    """Proves each setting the drop-in makes names a key this kernel has (a typo would only be
    logged by systemd-sysctl at boot, and the setting silently missing), except those marked
    optional with "-" (a module's keys), and that each value has as many fields as the
    kernel's own."""
    path = Path("/proc/sys") / key.replace(".", "/")
    if optional and not path.exists():
        return
    assert path.exists(), f"{key}: not a sysctl of this kernel"
    assert len(value.split()) == len(path.read_text().split()), (key, value, path.read_text())
