"""The MQTT password comes from the environment or a file, never has to be on the command line,
and no message shows it: not usage errors about the URL, not a refused connection."""

from __future__ import annotations

import subprocess

import pytest
from helpers import run_cli
from mqtt_broker import find_mosquitto, publish, start_broker
from stream_process import TEST_CLASS, StreamProcess, generated_lines, summary_value

from decoder.stream.mqtt import PASSWORD_ENV, parse_url, redact

# Every character a URL treats specially, and the ones a shell or a config file might.
PASSWORD = "p@ss:w/rd#%?&= ;x"
SECRET_PARTS = ["p@ss", "w/rd", "rd#", "ss:w", "%?&"]


def assert_no_secret(text: str, secret: str = PASSWORD) -> None:
    assert secret not in text
    for part in SECRET_PARTS if secret == PASSWORD else [secret]:
        assert part not in text, text


@pytest.mark.parametrize(
    "url",
    [
        "mqtt://alice:s3cr3tpw@broker:99999/t/#",  # bad port
        "mqtt://alice:s3cr3tpw@broker",  # no topic
        "mqtt://alice:s3cr3tpw@:1883/t",  # no host
        "http://alice:s3cr3tpw@broker/t",  # not MQTT
        "mqtt://alice:s3cr/3tpw@broker/t",  # a / in the password, unescaped
        "mqtt://alice:1883/s3cr3tpw@broker/t",  # ... that even looks like a port
        "mqtt://alice:s3cr3tpw@127.0.0.1:1/t",  # a good URL, nothing listening: exit 1
    ],
)
def test_url_errors_never_show_the_password(url):
    res = run_cli("stream", "--classes", TEST_CLASS, "--mqtt", url)
    err = res.stderr.decode()
    assert res.returncode == (1 if ":1/" in url else 2), err
    assert ("--mqtt" in err or "cannot connect" in err) and "Traceback" not in err
    for part in ("s3cr3tpw", "s3cr", "3tpw"):
        assert part not in err, err


def test_the_url_forms_parse_and_redact():
    url = parse_url("mqtt://alice:p%40ss%2Fw@broker:1884/helium/+/rx")
    assert (url.username, url.password, url.host, url.port, url.topic) == (
        "alice",
        "p@ss/w",
        "broker",
        1884,
        "helium/+/rx",
    )
    assert "p%40ss" not in repr(url) and "p@ss" not in repr(url) and "p@ss" not in str(url)
    assert redact("mqtt://alice:p/ss@broker/t") == "mqtt://alice:***@broker/t"
    assert redact("mqtt://alice@broker/t") == "mqtt://alice@broker/t"
    assert redact("mqtt://broker/t") == "mqtt://broker/t"


def test_a_password_without_a_user_is_a_usage_error(monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    res = run_cli("stream", "--classes", TEST_CLASS, "--mqtt", "mqtt://broker/t")
    assert res.returncode == 2 and b"needs a user name" in res.stderr
    assert_no_secret(res.stderr.decode())


def test_an_unreadable_password_file_is_one_line_and_exit_1(tmp_path):
    res = run_cli(
        "stream", "--classes", TEST_CLASS, "--mqtt", "mqtt://u@broker/t", "--mqtt-password-file", tmp_path / "none"
    )
    assert res.returncode == 1
    assert res.stderr.decode().splitlines() == [
        f"decoder: error: cannot read --mqtt-password-file {tmp_path / 'none'}: No such file or directory"
    ]


@pytest.fixture(scope="module")
def auth_broker(tmp_path_factory):
    """A Mosquitto that admits only alice, with PASSWORD."""
    binary = find_mosquitto()
    passwd = subprocess.run(["which", "mosquitto_passwd"], capture_output=True, text=True).stdout.strip()
    if binary is None or not passwd:
        pytest.skip("mosquitto and mosquitto_passwd are needed")
    d = tmp_path_factory.mktemp("auth-broker")
    subprocess.run([passwd, "-b", "-c", str(d / "passwords"), "alice", PASSWORD], check=True, timeout=30)
    broker = start_broker(d, binary, allow_anonymous="false", password_file=str(d / "passwords"))
    yield broker
    broker.stop()


def publish_as_alice(broker, topic: str, payloads) -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set("alice", PASSWORD)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(topic, payload, qos=1).wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize("given", ["environment", "file"])
def test_a_password_with_url_special_characters_from_the_environment_or_a_file(
    auth_broker, tmp_path, monkeypatch, given
):
    topic = f"pw/{given}"
    args = ["--classes", TEST_CLASS, "--mqtt", f"mqtt://alice@{auth_broker.host}:{auth_broker.port}/{topic}"]
    args += ["--client-id", f"pw-test-{given}", "--max-delay", "0.3"]
    if given == "environment":
        monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    else:
        monkeypatch.delenv(PASSWORD_ENV, raising=False)
        (tmp_path / "pw").write_text(PASSWORD + "\n")
        args += ["--mqtt-password-file", str(tmp_path / "pw")]
    lines = generated_lines(5, seed=21)
    with StreamProcess(*args, stdin=False) as p:
        p.wait_for_stderr("subscribed to")
        assert PASSWORD not in " ".join(p.proc.args)  # not on the command line (ps)
        publish_as_alice(auth_broker, topic, lines)
        rows = p.rows(5, timeout=60)
        p.signal()
        assert p.wait() == 0, p.stderr
    assert len(rows) == 5 and summary_value(p.stderr, "decoded") == 5
    assert_no_secret(p.stderr)


def test_a_wrong_password_is_refused_in_one_line_without_showing_either(auth_broker, monkeypatch):
    wrong = "not-" + PASSWORD
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    url = f"mqtt://alice@{auth_broker.host}:{auth_broker.port}/pw/wrong"
    with StreamProcess("--classes", TEST_CLASS, "--mqtt", url, stdin=False) as p:
        assert p.wait() == 1
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("decoder: error: ") and "refused" in lines[0], p.stderr
    assert_no_secret(p.stderr)
    assert "not-p@ss" not in p.stderr


def test_publish_helper_still_reaches_an_open_broker(mqtt_broker):
    """The anonymous session broker is unchanged (the other MQTT tests rely on it)."""
    publish(mqtt_broker, "pw/open", [b"{}"])
