from pathlib import Path

from hosting.iaas.accel import detect_accel


def test_no_kvm_device_means_tcg(tmp_path: Path) -> None:
    accel = detect_accel(tmp_path / "kvm", tmp_path / "kvm_pvm")
    assert (accel.name, str(accel)) == ("tcg", "tcg (kvm unusable: no /dev/kvm)")


def test_a_nested_pvm_device_is_unusable_for_stock_kernels(tmp_path: Path) -> None:
    (tmp_path / "kvm").touch()
    (tmp_path / "kvm_pvm").mkdir()
    accel = detect_accel(tmp_path / "kvm", tmp_path / "kvm_pvm")
    assert str(accel) == "tcg (kvm unusable: pvm)"
    assert "kvm" not in accel.qemu_args


def test_a_usable_kvm_device_gets_kvm_with_the_host_cpu(tmp_path: Path) -> None:
    (tmp_path / "kvm").touch(mode=0o600)
    accel = detect_accel(tmp_path / "kvm", tmp_path / "kvm_pvm")
    assert accel.name == "kvm"
    assert accel.qemu_args == ["-accel", "kvm", "-cpu", "host"]
