"""Host credentials over HTTPS, through the real kubernetes client against the fake API server
serving TLS: a private CA bundle (`ca_file`) verifies it; `verify_ssl: false` is said once, not
on every API call."""

from __future__ import annotations

import logging
import subprocess
import warnings

import pytest
from urllib3.exceptions import InsecureRequestWarning

from tasks.config.environments import ConfigError, parse_environments
from tasks.deploy import kube as kube_adapter
from tasks.deploy.kube import Kube, KubeUnavailable
from tasks.deploy.stepper import kube_for
from tests.support.fake_kube import FakeKube

BASE = {"namespace": "shop", "deployment": "web", "container": "app", "image": "reg/web:{sha}"}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "ca.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return str(cert), str(key)


@pytest.fixture
def tls_kube(certificate):
    fake = FakeKube().serve(ssl_context=certificate)
    fake.add_deployment("shop", "web", "reg/web:v1")
    yield fake
    fake.stop()


def env(credentials: dict):
    return parse_environments({"environments": {"staging": {**BASE, "credentials": credentials}}},
                              "test")["staging"]


def test_ca_file_verifies_a_private_ca(tls_kube, certificate):
    cfg = env({"mode": "host", "host": tls_kube.url, "ca_file": certificate[0]})
    kube = kube_for(cfg)
    try:
        assert kube.get_deployment("shop", "web")["metadata"]["name"] == "web"
    finally:
        kube.close()
    unknown = kube_for(env({"mode": "host", "host": tls_kube.url, "request_timeout": 2}))
    try:
        with pytest.raises(KubeUnavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            unknown.get_deployment("shop", "web")
    finally:
        unknown.close()


def test_ca_file_is_refused_where_it_means_nothing():
    with pytest.raises(ConfigError, match="ca_file is for mode host"):
        env({"mode": "in_cluster", "ca_file": "/etc/ca.pem"})
    with pytest.raises(ConfigError, match="the CA would never be checked"):
        env({"mode": "host", "host": "https://k8s.example", "ca_file": "/etc/ca.pem", "verify_ssl": False})


def test_verify_ssl_false_is_said_once_not_per_call(tls_kube, monkeypatch, caplog):
    monkeypatch.setattr(kube_adapter, "_insecure_hosts", set())  # a fresh process
    insecure = {"mode": "host", "host": tls_kube.url, "verify_ssl": False}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with caplog.at_level(logging.WARNING, logger="tasks.deploy.kube"):
            for _ in range(2):  # the configuration is loaded by the worker and its children
                cfg = env(insecure)
            for _ in range(2):
                kube = kube_for(cfg)
                try:
                    for _ in range(3):
                        kube.get_deployment("shop", "web")
                finally:
                    kube.close()
            # another host keeps urllib3's warning: only the host configured insecure is quiet
            from kubernetes import client

            other = client.Configuration(host=tls_kube.url.replace("127.0.0.1", "localhost"))
            other.verify_ssl = False
            plain = Kube(other)
            try:
                plain.get_deployment("shop", "web")
            finally:
                plain.close()
    said = [r for r in caplog.records if "verification is off" in r.getMessage()]
    assert len(said) == 1 and tls_kube.url in said[0].getMessage()
    insecure_warnings = [str(w.message) for w in caught if issubclass(w.category, InsecureRequestWarning)]
    assert insecure_warnings and all("'localhost'" in m for m in insecure_warnings), insecure_warnings
