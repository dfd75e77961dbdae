"""The Farama `miniwob` gymnasium env, driving a local Chromium that never touches the network.

`miniwob.MiniWoBEnvironment` starts Chrome through `SeleniumInstance.create_driver`, which lets
Selenium look for a browser and a driver (Selenium Manager may download them) and passes only
three flags. `OfflineChromium` replaces that one method: it runs the given Chromium and
ChromeDriver binaries with the flags that keep a headless Chromium quiet on a closed network, in a
fresh profile directory, and it can switch the page to another task without a new browser. The
gymnasium API (`reset(seed, options)`, `step(action)`, `create_action`) is miniwob's own.

Browser health: ChromeDriver starts in a process group of its own, which Chromium and its helper
processes join, so the whole browser can be killed at once (`kill_browser`). A small reaper (`sh`,
in its own session) waits for the process that started the browser to exit and then kills that
group: a worker process killed with SIGKILL (a hung op, a crash) leaves no Chromium behind. Every
WebDriver command answers within `COMMAND_TIMEOUT_S` or raises, so a hung page becomes an error,
not a hang; `BROWSER_ERRORS` are the exceptions that mean "this browser is broken".

This module imports `miniwob` and `selenium`; `steprl.envs.miniwob.env` imports it only when a
`MiniWoBEnv` is built, so a missing package is reported there with the install command.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.parse
from typing import Any

import urllib3

from miniwob.action import ActionSpaceConfig
from miniwob.constants import ALL_POSSIBLE_KEYS
from miniwob.environment import MiniWoBEnvironment
from miniwob.fields import get_field_extractor
from miniwob.selenium_instance import DEFAULT_BASE_URL, SeleniumInstance
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

#: Headless Chromium flags that work on a machine without network access (no background
#: requests, no component updates, no sync, no QUIC), plus a 1:1 device scale for screenshots.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--force-device-scale-factor=1",
)
PAGE_LOAD_TIMEOUT_S = 10.0
#: Longest wait for one WebDriver command (selenium's default is 120 s); MiniWoB++ commands take
#: milliseconds, so a command this slow means a hung page or browser.
COMMAND_TIMEOUT_S = 30
#: Kills the browser's process group once its owner has exited (or exits when the group is gone).
REAPER_SCRIPT = (
    'while kill -0 "$1" 2>/dev/null && kill -0 "-$2" 2>/dev/null; do sleep 1; done; '
    'kill -9 "-$2" 2>/dev/null; exit 0'
)


class PageLoadError(RuntimeError):
    """A MiniWoB++ page did not load in time."""


#: Exceptions that mean the browser (not the policy) failed: crashed, hung, or stopped answering.
BROWSER_ERRORS: tuple[type[BaseException], ...] = (WebDriverException, PageLoadError, OSError, urllib3.exceptions.HTTPError)


def action_space_config() -> ActionSpaceConfig:
    """miniwob's "all_supported" action types with every key combination allowed for PRESS_KEY
    (the default list has no Escape, no Ctrl+Z, ...; the model's hotkeys decide)."""
    return dataclasses.replace(ActionSpaceConfig.get_preset("all_supported"), allowed_keys=ALL_POSSIBLE_KEYS)


class OfflineChromium(SeleniumInstance):
    """A miniwob SeleniumInstance that starts the given Chromium + ChromeDriver binaries offline."""

    def __init__(self, *args: Any, chrome_binary: str, chromedriver: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.chrome_binary = chrome_binary
        self.chromedriver = chromedriver
        self.profile_dir: str | None = None
        self.browser_group: int | None = None  # process group of ChromeDriver + Chromium
        self._reaper: subprocess.Popen | None = None
        self._driver_process: subprocess.Popen | None = None

    def create_driver(self) -> None:
        """Start Chromium (replaces miniwob's version: explicit binaries, offline flags, own profile,
        its own process group watched by a reaper, a bounded wait per command)."""
        options = webdriver.ChromeOptions()
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        self.profile_dir = tempfile.mkdtemp(prefix="steprl-miniwob-")
        options.add_argument(f"--user-data-dir={self.profile_dir}")
        options.binary_location = self.chrome_binary
        # Both paths given: Selenium Manager is not consulted, so nothing is downloaded.
        service = Service(executable_path=self.chromedriver, popen_kw={"start_new_session": True})
        self.driver = webdriver.Chrome(service=service, options=options)
        self._driver_process = service.process
        self.browser_group = service.process.pid  # start_new_session: its pid is the group id
        self._reaper = subprocess.Popen(
            ["sh", "-c", REAPER_SCRIPT, "steprl-miniwob-reaper", str(os.getpid()), str(self.browser_group)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.driver.command_executor._client_config.timeout = COMMAND_TIMEOUT_S  # selenium has no public setter
        self._open(self.url)

    def _open(self, url: str) -> None:
        self.driver.get(url)
        try:
            WebDriverWait(self.driver, PAGE_LOAD_TIMEOUT_S).until(
                expected_conditions.element_to_be_clickable((By.ID, self.SYNC_SCREEN_ID))
            )
        except TimeoutException:
            raise PageLoadError(f"The MiniWoB++ page {url} did not load within {PAGE_LOAD_TIMEOUT_S:.0f} s") from None
        self.inner_width, self.inner_height = self.driver.execute_script("return [window.innerWidth, window.innerHeight];")

    def load_task(self, subdomain: str) -> None:
        """Show the page of another task in the same browser (much faster than a new browser)."""
        if subdomain.startswith("flight."):
            raise ValueError("FlightWoB tasks (flight.*) need miniwob's HTTP server and are not supported")
        self.url = urllib.parse.urljoin(DEFAULT_BASE_URL, f"{subdomain}.html")
        self.field_extractor = get_field_extractor(subdomain)
        self._open(self.url)

    def kill_browser(self) -> None:
        """SIGKILL ChromeDriver, Chromium and its helpers (the whole process group) and delete the
        profile directory; idempotent."""
        if self.browser_group is not None:
            try:
                os.killpg(self.browser_group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.browser_group = None
        if self._driver_process is not None:  # reap ChromeDriver (Chromium's helpers go to init)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._driver_process.wait(timeout=5.0)
            self._driver_process = None
        if self._reaper is not None:
            self._reaper.kill()
            self._reaper.wait()
            self._reaper = None
        if self.profile_dir is not None:
            shutil.rmtree(self.profile_dir, ignore_errors=True)
            self.profile_dir = None

    def close(self) -> None:
        """Quit the browser politely, then make sure none of its processes is left."""
        if getattr(self, "driver", None) is not None:
            super().close()
        self.kill_browser()


class OfflineMiniWoBEnv(MiniWoBEnvironment):
    """miniwob's gymnasium env on an `OfflineChromium`, able to move to another task's page."""

    def __init__(self, subdomain: str, chrome_binary: str, chromedriver: str, **kwargs: Any):
        self._binaries = {"chrome_binary": chrome_binary, "chromedriver": chromedriver}
        super().__init__(subdomain=subdomain, action_space_config=action_space_config(), **kwargs)

    def _hard_reset_instance(self) -> None:
        """Start (or restart) the browser: miniwob's own method, with `OfflineChromium`."""
        if getattr(self, "instance", None):
            self.instance.close()
        self.instance = OfflineChromium(index=0, **self.instance_kwargs, **self._binaries)
        self.instance.start()
        self.instance.wait()

    def switch_task(self, subdomain: str) -> None:
        """Point the browser at task `subdomain` (a later hard reset reopens the same task)."""
        if subdomain == self.subdomain:
            return
        self.instance.load_task(subdomain)
        self.subdomain = subdomain
        self.instance_kwargs["subdomain"] = subdomain

    def set_time_limit(self, seconds: float) -> None:
        """Override the page's episode time limit (core.EPISODE_MAX_TIME) for the next episodes."""
        self.instance.driver.execute_script(f"core.EPISODE_MAX_TIME = {int(seconds * 1000)};")

    def kill_browser(self) -> None:
        """Kill this env's browser outright (after a crash or hang: no polite quit that could hang)."""
        instance = getattr(self, "instance", None)
        if instance is not None:
            instance.kill_browser()
            instance.died = True

    def metadata_now(self) -> dict[str, Any]:
        """done / env_reward / raw_reward / reason as the page reports them right now."""
        return dict(self.instance.get_metadata())
