"""app.py and src/insight/page.py through a real server on a free loopback port: gradio_client's decisions equal
predict.py's, bad photos get their message and the next request is answered, 8 requests at once are all answered, a
run that a trainer still writes uses its finished folds and says so, a run that does not exist is one line before any
server; and headless Chromium uploads a photo, sees the decision and takes a screenshot."""
import concurrent.futures
import re
import shutil
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from bench.page import ask, free_port, serve
from src.run.rundir import RunDir
from tests.helpers import ROOT, first_eval_image


@pytest.fixture(scope="module")
def page(trained_run, tmp_path_factory):
    """(url, log_dir, run name) of a page on a copy of the trained run."""
    log_dir, name = trained_run
    logs = tmp_path_factory.mktemp("page")
    shutil.copytree(log_dir / name, logs / name)
    proc, url = serve(logs, name, logs / "app.log")
    yield url, logs, name
    proc.terminate()
    proc.wait(timeout=30)


def classes_said(markdown: str) -> dict[str, int]:
    """Photo name -> the class the page decided."""
    return {m[1]: int(m[2]) for m in re.finditer(r"\*\*([^*]+)\*\*: class (\d+)", markdown)}


def png_bomb(path: Path, width: int = 30000, height: int = 30000):
    """A PNG whose header claims width x height pixels of one colour (a few kB on disk)."""
    row = b"\x00" + b"\x00" * width
    data = zlib.compress(row * 64)  # the header is what is refused; the rows need not all be there

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))


@pytest.mark.slow
def test_the_page_decides_as_predict_py_does(page, dataset, tmp_path):
    url, logs, name = page
    photos = sorted((dataset / "eval" / "images").iterdir())[:3]
    answer, gallery = ask(url, *photos)
    said = classes_said(answer)
    out = tmp_path / "p.csv"
    subprocess.run([sys.executable, "predict.py", "--log_dir", str(logs), "--run", name, "--out", str(out),
                    *map(str, photos)], cwd=ROOT, check=True, capture_output=True)
    by_predict = pd.read_csv(out).set_index("path")["class"]
    assert said == {p.name: int(by_predict[str(p)]) for p in photos}, answer
    assert len(gallery) == 3  # each photo's input, maps and bars


@pytest.mark.slow
def test_bad_photos_get_their_message_and_the_next_request_is_answered(page, dataset, tmp_path):
    url, _, _ = page
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    png_bomb(tmp_path / "bomb.png")
    big = tmp_path / "big.jpg"
    cv2.imwrite(str(big), np.full((9000, 12000, 3), 128, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 50])
    expected = {"notes.jpg": "not an image format", "empty.png": "an empty file: 0 bytes",
                "bomb.png": "pixels"}
    for name, message in expected.items():
        answer, gallery = ask(url, tmp_path / name)
        assert "cannot be predicted" in answer and message in answer, answer
        assert gallery == []
    answer, _ = ask(url, big)
    assert "class" in answer and "12000x9000 is over max_image_pixels" in answer and "decoded at 1/2" in answer
    good = first_eval_image(dataset)
    assert good.name in classes_said(ask(url, good)[0])


@pytest.mark.slow
def test_eight_requests_at_once_are_all_answered(page, dataset):
    url, _, _ = page
    photos = sorted((dataset / "eval" / "images").iterdir())[:8]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda p: ask(url, p)[0], photos))
    assert [p.name in classes_said(a) for p, a in zip(photos, answers)] == [True] * 8


@pytest.mark.slow
def test_a_run_still_being_trained_uses_its_finished_folds_and_says_so(trained_run, dataset, tmp_path):
    log_dir, name = trained_run
    logs = tmp_path / "logs"
    shutil.copytree(log_dir / name, logs / name)
    run = RunDir(logs, name)
    run.last(1).unlink()  # fold 1 has not finished, and a trainer holds it
    with run.fold_lock(1):
        proc, url = serve(logs, name, tmp_path / "app.log")
        try:
            answer, _ = ask(url, first_eval_image(dataset))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert "fold(s) 0 used" in answer and "fold 1 is still being trained" in answer and "class" in answer


@pytest.mark.slow
def test_a_run_that_does_not_exist_is_one_line_before_any_server(tmp_path):
    port = free_port()
    proc = subprocess.run([sys.executable, "app.py", "--log_dir", str(tmp_path), "--run", "nope", "--port",
                           str(port)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "run" in lines[0] and "not found" in lines[0], proc.stderr
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens


@pytest.mark.slow
def test_headless_chromium_uploads_a_photo_and_sees_the_decision(page, dataset, tmp_path):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, _ = page
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1400"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        browser.get(url)
        WebDriverWait(browser, 90).until(lambda b: b.find_elements(By.CSS_SELECTOR, "input[type=file]"))
        photo = first_eval_image(dataset)
        browser.find_elements(By.CSS_SELECTOR, "input[type=file]")[0].send_keys(str(photo))
        WebDriverWait(browser, 30).until(lambda b: photo.name in b.page_source)  # the upload is listed
        next(b for b in browser.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Predict").click()
        WebDriverWait(browser, 90).until(lambda b: "class" in b.find_element(By.ID, "decisions").text)
        decision = browser.find_element(By.ID, "decisions").text
        shot = tmp_path / "page.png"
        browser.save_screenshot(str(shot))
    finally:
        browser.quit()
    assert photo.name in decision and re.search(r"class \d+", decision)
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[0] > 600 and image.std() > 10  # a page, not a blank screen


def test_a_host_other_than_loopback_warns_and_auth_takes_user_password():
    from src.config.parsing import parse
    from src.config.schema import AppConfig
    from src.errors import ConfigError
    from src.insight.page import access

    assert access(parse(["--run", "r"], AppConfig)) == (None, None)
    auth, warning = access(parse(["--run", "r", "--host", "0.0.0.0"], AppConfig))
    assert auth is None and "answers every machine" in warning and "--auth" in warning
    assert access(parse(["--run", "r", "--host", "0.0.0.0", "--auth", "me:pw"], AppConfig))[0] == ("me", "pw")
    with pytest.raises(ConfigError, match="user:password"):
        access(parse(["--run", "r", "--auth", "me"], AppConfig))


@pytest.mark.slow
def test_the_config_route_shows_no_path_of_the_server(page, trained_run, dataset):
    """Gradio serves every component's value at /config: the run tab's settings keep each path's last part only."""
    import urllib.request

    url, logs, name = page
    with urllib.request.urlopen(f"{url}config", timeout=30) as answer:
        text = answer.read().decode()
    assert "Settings" in text and f".../{dataset.name}" in text
    for path in (logs, trained_run[0], dataset):
        assert str(path) not in text and str(path).replace("/", "\\/") not in text


def test_a_jpeg_over_pils_own_limit_is_decoded_reduced_under_ours(tmp_path, monkeypatch):
    """PIL refuses a header above twice its MAX_IMAGE_PIXELS (a 20000x20000 photo); max_image_pixels is the one limit,
    and it holds for the reduced decode: a quarter of the pixels at a half of each side."""
    from PIL import Image

    from src.data.images import read_rgb
    from src.insight.page import fitted

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)  # the same refusal, at a size a test can draw
    path = tmp_path / "big.jpg"
    Image.new("RGB", (1000, 800), (120, 90, 60)).save(path)
    small, note = fitted(str(path), 300_000, tmp_path)
    assert "1000x800 is over max_image_pixels 300,000: decoded at 1/2 (500x400)" in note
    assert read_rgb(small, 300_000).shape == (400, 500, 3)
    assert fitted(str(path), 10_000, tmp_path) == (str(path), "")  # over even at an eighth: refused as it is


def test_the_login_comes_from_a_file_or_the_environment_and_an_empty_host_is_refused(tmp_path, monkeypatch):
    from src.config.parsing import parse
    from src.config.schema import AppConfig
    from src.errors import ConfigError
    from src.insight.page import access

    secret = tmp_path / "login"
    secret.write_text("me:pw from a file\n")
    assert access(parse(["--run", "r", "--auth_file", str(secret)], AppConfig))[0] == ("me", "pw from a file")
    monkeypatch.setenv("MASKCLS_AUTH", "env:pw")
    assert access(parse(["--run", "r"], AppConfig))[0] == ("env", "pw")
    assert access(parse(["--run", "r", "--auth", "me:pw"], AppConfig))[0] == ("me", "pw")  # the option wins
    with pytest.raises(ConfigError, match="--auth and --auth_file both give a login"):
        access(parse(["--run", "r", "--auth", "a:b", "--auth_file", str(secret)], AppConfig))
    with pytest.raises(ConfigError, match="--auth_file .*missing: not found"):
        access(parse(["--run", "r", "--auth_file", str(tmp_path / "missing")], AppConfig))
    monkeypatch.setenv("MASKCLS_AUTH", "no-colon")
    with pytest.raises(ConfigError, match="MASKCLS_AUTH takes user:password"):
        access(parse(["--run", "r"], AppConfig))
    monkeypatch.delenv("MASKCLS_AUTH")
    with pytest.raises(ConfigError, match="--host is empty; give 127.0.0.1"):
        access(parse(["--run", "r", "--host", ""], AppConfig))
