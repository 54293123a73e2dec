"""franz-go's own integration tests (`pkg/kgo` of the franz-go release that
compat-tests/go pins) against Tributary: the test binary is built from the module
cache and run against a fresh broker named by KGO_SEEDS, one replica
(KGO_TEST_RF=1) and 20,000 records per ETL test (KGO_TEST_RECORDS; franz-go's
default is 500,000, which bench-like runs can set with FRANZ_KGO_RECORDS).

Every test that runs must pass. The ones franz-go skips by itself are listed with
the reason: share groups (KIP-932: ShareFetch and ShareAcknowledge, which Tributary
does not serve; see the README's API table) and the SASL tests, which need a
second broker address with SCRAM or OAUTHBEARER (covered by test_security.py)."""

import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT

# What franz-go skips against Tributary, and why (its own skip messages).
SKIPPED = {
    "TestShareGroup": "share groups",
    "TestShareGroupETL": "share groups",
    "TestShareGroupAckOnClose": "share groups",
    "TestShareGroupOffsetsAdmin": "share groups",
    "TestConsumeRegexShareSkipsInternal": "share groups",
    "TestSCRAMAuth": "needs KGO_TEST_SCRAM_SEEDS",
    "TestSCRAMAuthBadCredentials": "needs KGO_TEST_SCRAM_SEEDS",
    "TestOAuthAuth": "needs KGO_TEST_OAUTH_SEEDS",
}


def franz_version():
    text = (ROOT / "compat-tests" / "go" / "go.mod").read_text()
    return re.search(r"github\.com/twmb/franz-go (v[\w.\-]+)\n", text).group(1)


@pytest.fixture(scope="module")
def kgo_tests(tmp_path_factory):
    """The pkg/kgo test binary, built from a copy of the pinned release's module."""
    env = dict(os.environ, GOMODCACHE=str(ROOT / ".tools" / "gomod"), GOCACHE=str(ROOT / ".tools" / "gocache"),
               GOFLAGS="-modcacherw")
    version = franz_version()
    src = ROOT / ".tools" / "gomod" / "github.com" / "twmb" / f"franz-go@{version}"
    if not src.is_dir():
        r = subprocess.run(["go", "mod", "download", f"github.com/twmb/franz-go@{version}"], env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
    work = tmp_path_factory.mktemp("franz") / "franz-go"
    shutil.copytree(src, work)
    for d, _, files in os.walk(work):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
    out = work / "kgo.test"
    r = subprocess.run(["go", "test", "-c", "-o", str(out), "./pkg/kgo"], cwd=work, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    return work, out


def test_franz_go_integration_suite_passes(kgo_tests, broker):
    work, binary = kgo_tests
    env = dict(os.environ, KGO_SEEDS=broker.bootstrap, KGO_TEST_RF="1",
               KGO_TEST_RECORDS=os.environ.get("FRANZ_KGO_RECORDS", "20000"))
    for k in ("KGO_TEST_SCRAM_SEEDS", "KGO_TEST_OAUTH_SEEDS", "KGO_TEST_TLS", "KGO_TEST_CHAOS"):
        env.pop(k, None)
    r = subprocess.run([str(binary), "-test.v", "-test.timeout", "840s"], cwd=work / "pkg" / "kgo", env=env,
                       capture_output=True, text=True, timeout=900)
    results = {}
    for m in re.finditer(r"^--- (PASS|FAIL|SKIP): (\w+) ", r.stdout, re.M):
        results[m.group(2)] = m.group(1)
    counts = {s: sum(1 for v in results.values() if v == s) for s in ("PASS", "FAIL", "SKIP")}
    print(f"franz-go {franz_version()} pkg/kgo against Tributary: {counts}")
    failed = sorted(t for t, s in results.items() if s == "FAIL")
    skipped = {t for t, s in results.items() if s == "SKIP"}
    assert not failed and r.returncode == 0, (failed, r.stdout[-6000:] + r.stderr[-2000:])
    assert skipped <= set(SKIPPED), sorted(skipped - set(SKIPPED))
    # The suite's broker-facing tests ran (not skipped for want of a broker).
    for name in ("TestGroupETL", "TestTxnEtl", "TestGroupSimple", "Test848RegexBrokerResolves", "TestIssue865"):
        assert results.get(name) == "PASS", (name, results.get(name))
