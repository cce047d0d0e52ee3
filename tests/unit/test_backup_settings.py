"""Where backups are kept, as the environment says (`STRATA_BACKUP_S3_*`): a credential is never taken from a
URL, nor repeated in the message that refuses it."""

from pathlib import Path

import pytest

from hosting.paas.backup_store import S3Location
from strata.config import Settings

S3_VARIABLES = ("STRATA_BACKUP_S3_URL", "STRATA_BACKUP_S3_ENDPOINT", "STRATA_BACKUP_S3_REGION")


def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **variables: str) -> Settings:
    for name in S3_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env(tmp_path)


def test_without_a_url_backups_stay_on_the_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert settings(monkeypatch, tmp_path).backup_s3 is None


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://backups", "backups", ""),
        ("s3://backups/", "backups", ""),
        ("s3://backups/site-a", "backups", "site-a"),
        ("s3://backups/site-a/strata/", "backups", "site-a/strata"),
    ],
)
def test_a_url_names_the_bucket_and_the_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, bucket: str, prefix: str
) -> None:
    found = settings(monkeypatch, tmp_path, STRATA_BACKUP_S3_URL=url).backup_s3
    assert found == S3Location(bucket=bucket, prefix=prefix)
    assert found.url("acme", "7.tar") == f"s3://{bucket}/{prefix + '/' if prefix else ''}acme/7.tar"


def test_an_endpoint_and_a_region_go_with_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    found = settings(
        monkeypatch,
        tmp_path,
        STRATA_BACKUP_S3_URL="s3://backups/site-a",
        STRATA_BACKUP_S3_ENDPOINT="http://127.0.0.1:9000",
        STRATA_BACKUP_S3_REGION="eu-west-1",
    ).backup_s3
    assert found == S3Location("backups", "site-a", "http://127.0.0.1:9000", "eu-west-1")
    assert str(found) == "s3://backups/site-a at http://127.0.0.1:9000"


@pytest.mark.parametrize(
    "variables",
    [
        {"STRATA_BACKUP_S3_URL": "s3://AKIDEXAMPLE:hunter2secret@backups/site-a"},
        {"STRATA_BACKUP_S3_URL": "s3://backups", "STRATA_BACKUP_S3_ENDPOINT": "https://key:hunter2secret@minio:9000"},
    ],
)
def test_a_credential_in_a_url_is_refused_and_never_repeated(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variables: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match="holds a credential: give it as AWS_ACCESS_KEY_ID") as refused:
        settings(monkeypatch, tmp_path, **variables)
    assert "hunter2secret" not in str(refused.value)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"STRATA_BACKUP_S3_URL": "https://backups/site-a"}, "expected s3://BUCKET or s3://BUCKET/PREFIX"),
        ({"STRATA_BACKUP_S3_URL": "s3:///site-a"}, "expected s3://BUCKET or s3://BUCKET/PREFIX"),
        ({"STRATA_BACKUP_S3_URL": "s3://backups", "STRATA_BACKUP_S3_ENDPOINT": "minio:9000"}, "expected http"),
        ({"STRATA_BACKUP_S3_ENDPOINT": "http://127.0.0.1:9000"}, "without STRATA_BACKUP_S3_URL"),
    ],
)
def test_what_is_not_a_store_is_refused_saying_what_is_expected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variables: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        settings(monkeypatch, tmp_path, **variables)
