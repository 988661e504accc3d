"""maskdetect.redact: URL user info, secret query values and registered secrets never reach a text or a log."""

from __future__ import annotations

import logging

import pytest

from maskdetect import colab
from maskdetect.redact import SECRET_PARAMS, redact, redact_url, register_secret


@pytest.fixture(autouse=True)
def _no_secrets_from_other_tests(monkeypatch):
    """Secrets registered by tests that ran earlier in this process (a webhook's host among them) would hide
    parts of the texts these tests compare: each test starts with none, and they are restored after."""
    from maskdetect import redact as module

    monkeypatch.setattr(module, "_secrets", set())

TEXTS = [
    ("rtsp://admin:hunter2@10.0.0.5:554/stream1", "rtsp://***@10.0.0.5:554/stream1"),
    ("http://bob@cam.local/video.mjpg", "http://***@cam.local/video.mjpg"),
    ("https://cam/x?user=a&password=s3cret&fps=5", "https://cam/x?user=***&password=***&fps=5"),
    ("could not open rtsp://u:p@h/x: 401", "could not open rtsp://***@h/x: 401"),
    ("rtsp://cam/live?api_key=k1k1k1&pwd=p2", "rtsp://cam/live?api_key=***&pwd=***"),
    ("GET /ds/x?key=abc123&y=2 HTTP/1.1", "GET /ds/x?key=***&y=*** HTTP/1.1"),
    ("s3 ?X-Amz-Signature=abc&X-Amz-Credential=id/2026", "s3 ?X-Amz-Signature=***&X-Amz-Credential=***"),
    ("monkey=banana donkey_key=1", "monkey=banana donkey_key=1"),  # a name that merely ends in "key"
    ("rtsp://10.0.0.5/stream", "rtsp://10.0.0.5/stream"),
    ("/videos/in.mp4", "/videos/in.mp4"),
]


@pytest.mark.parametrize("text, expected", TEXTS)
def test_redact_hides_credentials_in_any_text(text, expected):
    assert redact(text) == expected


@pytest.fixture(scope="module")
def colab_by_path():
    """maskdetect/colab.py as notebook 01 runs it before the package is installed: by path."""
    import runpy

    return runpy.run_path(colab.__file__)


@pytest.mark.parametrize("text, expected", TEXTS)
def test_colab_run_by_path_redacts_by_the_same_rules(colab_by_path, text, expected):
    assert colab.redact is redact  # imported as part of the package: the package's function
    assert colab_by_path["redact"](text) == expected


@pytest.mark.parametrize("url, secret_only, every_value", [
    ("https://public.roboflow.com/ds/AbC?key=XyZ123", "https://public.roboflow.com/ds/AbC?key=***",
     "https://public.roboflow.com/ds/AbC?key=***"),
    ("https://u:pw1234@h/p?api_key=k1k1k1&a=b", "https://***@h/p?api_key=***&a=***", "https://***@h/p?api_key=***&a=***"),
    ("https://hooks.example/x?token=abc&room=2", "https://hooks.example/x?token=***&room=***",
     "https://hooks.example/x?token=***&room=***"),
    ("https://u@hooks.example/x?key=", "https://***@hooks.example/x?key=", "https://***@hooks.example/x?key="),
    ("https://hooks.example/x#frag", "https://hooks.example/x", "https://hooks.example/x"),
    ("http://127.0.0.1:8080/alert", "http://127.0.0.1:8080/alert", "http://127.0.0.1:8080/alert"),
    ("http://[::1/broken", "http://***", "http://***"),
    ("rtsp://cam/x?fps=5&channel=2", "rtsp://cam/x?fps=5&channel=2", "rtsp://cam/x?fps=***&channel=***"),
])
def test_redact_url(url, secret_only, every_value):
    assert redact_url(url) == secret_only
    assert redact_url(url, all_query=True) == every_value


def test_registered_secrets_are_hidden_everywhere_and_in_every_log_record(caplog):
    register_secret("Tr0ub4dor&3")
    register_secret("abc")  # too short to hide without mangling ordinary text
    assert redact("the key Tr0ub4dor&3 was refused; abc") == "the key *** was refused; abc"
    with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="urllib3.connectionpool"):
        logging.getLogger("urllib3.connectionpool").info("GET /x?token=%s&n=%d", "t0k3n", 1)
        logging.getLogger("anything").warning("login with %s", "Tr0ub4dor&3")
    assert "t0k3n" not in caplog.text and "Tr0ub4dor&3" not in caplog.text
    assert "token=***&n=***" in caplog.text


def test_a_library_factory_that_wraps_ours_is_kept_without_a_loop(caplog, monkeypatch):
    """Ray wraps the record factory on import; registering a secret afterwards installs ours again, over Ray's,
    which calls ours back (this recursed until the stack ran out, in whatever logged next)."""
    monkeypatch.setattr(logging, "_logRecordFactory", logging.getLogRecordFactory())  # restored after the test
    inner = logging.getLogRecordFactory()

    def library_factory(*args, **kwargs):
        record = inner(*args, **kwargs)
        record.library_mark = True
        return record

    logging.setLogRecordFactory(library_factory)
    register_secret("w1re-s3cret")
    with caplog.at_level(logging.INFO):
        logging.getLogger("anything").warning("sent %s", "w1re-s3cret")
    assert [getattr(r, "library_mark", False) for r in caplog.records] == [True]
    assert "w1re-s3cret" not in caplog.text and "sent ***" in caplog.text


def test_parameter_names_are_lower_case():
    assert all(name == name.lower() for name in SECRET_PARAMS)


# -- issue 24, mechanism 7: the inverted default ----------------------------------------------------------------
@pytest.mark.parametrize("url, shown", [
    ("smtp:/alerts:Pw0rdSmtp@mail.example:587", "smtp:***"),
    ("smtp//alerts:Pw0rdSmtp@mail.example:587", "***"),
    ("rtsp://admin:pa?ss#w0rd@cam.local:554/live", "rtsp://***@cam.local:554/live"),
    ("rtsp://admin:pa/ss?w0rd@cam.local/live", "rtsp://***@cam.local/live"),
    ("https://h.example/x?loginpas=Secr3tA&api-key=Secr3tB&code=Secr3tC&fps=5",
     "https://h.example/x?loginpas=***&api-key=***&code=***&fps=5"),
    ("https://dl.example/files/AbCd1234EfGh5678/model.tar.gz", "https://dl.example/files/***/model.tar.gz"),
    ("https://dl.example/models/tf2/20200711/efficientdet_d0_coco17_tpu-32.tar.gz",
     "https://dl.example/models/tf2/20200711/efficientdet_d0_coco17_tpu-32.tar.gz"),
    ("https://h.example:notaport/x", "https://***"),
    ("not a url at all", "***"),
])
def test_a_printed_url_shows_only_what_the_allow_list_names(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize("text, secret", [
    ("must be smtp://..., got smtp:/alerts:Pw0rdSmtp@mail.example:587", "Pw0rdSmtp"),
    ("must be smtp://..., got smtp//alerts:Pw0rdSmtp@mail.example:587", "Pw0rdSmtp"),
    ("GET /ds/x?loginpas=Secr3tA HTTP/1.1", "Secr3tA"),
    ("could not open rtsp://admin:pa?ss#w0rd@cam.local/live", "w0rd"),
])
def test_typos_and_unknown_keys_in_free_text_are_hidden(text, secret):
    assert secret not in redact(text)


def test_url_secrets_of_a_typo_url_are_registered():
    from maskdetect.redact import register_url_secrets

    register_url_secrets("smtp:/alerts:Reg1sterMe9@mail.example:587")
    assert "Reg1sterMe9" not in redact("the server said: 535 Reg1sterMe9 rejected")
