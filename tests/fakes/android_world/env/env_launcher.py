"""Fake `android_world.env.env_launcher.load_and_setup_env`: "connects" to an emulator."""

from __future__ import annotations

import os

from android_world.env import interface

DEFAULT_ADB_PATH = os.path.expanduser("~/Android/Sdk/platform-tools/adb")


def load_and_setup_env(
    *,
    console_port: int = 5554,
    emulator_setup: bool = False,
    freeze_datetime: bool = True,
    adb_path: str = DEFAULT_ADB_PATH,
    grpc_port: int = 8554,
) -> interface.FakeAsyncAndroidEnv:
    for name, value in (("console_port", console_port), ("grpc_port", grpc_port)):
        if type(value) is not int:
            raise TypeError(f"fake load_and_setup_env: {name} must be an int, got {value!r}")
    for name, value in (("emulator_setup", emulator_setup), ("freeze_datetime", freeze_datetime)):
        if not isinstance(value, bool):
            raise TypeError(f"fake load_and_setup_env: {name} must be a bool, got {value!r}")
    if not isinstance(adb_path, str):
        raise TypeError("fake load_and_setup_env: adb_path must be a str")
    # Emulator console ports are even numbers 5554..5682 (the adb port is console_port + 1).
    if console_port % 2 or not 5554 <= console_port <= 5682:
        raise ValueError(f"no emulator can listen on console port {console_port}")
    device = interface.FakeAsyncAndroidEnv(console_port, grpc_port)
    device.launch_args = {"console_port": console_port, "grpc_port": grpc_port, "emulator_setup": emulator_setup,
                          "freeze_datetime": freeze_datetime, "adb_path": adb_path}  # fmt: skip
    return device
