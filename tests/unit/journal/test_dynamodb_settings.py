"""DynamoDBSettings: the journal URL, region and credential sources, and that no secret leaks."""

from __future__ import annotations

import pytest

from threadweaver.adapters.journal.dynamodb.settings import DynamoDBSettings
from threadweaver.application.ports import JournalError

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"


def test_local_url():
    s = DynamoDBSettings.from_url(
        "dynamodb://127.0.0.1:8000?region=eu-west-1&table-prefix=tw1", environ={}
    )
    assert s.endpoint_url == "http://127.0.0.1:8000"
    assert s.region == "eu-west-1"
    assert s.table_prefix == "tw1"
    assert (s.journal_table, s.snapshot_table) == ("tw1-journal", "tw1-snapshot")
    assert s.tables == ["tw1-journal", "tw1-snapshot"]


def test_no_host_means_aws_and_defaults():
    s = DynamoDBSettings.from_url("dynamodb://", environ={})
    assert s.endpoint_url is None
    assert s.region == "us-east-1"
    assert s.table_prefix == "threadweaver"
    s = DynamoDBSettings.from_url(
        "dynamodb:///?table-prefix=prod", environ={"AWS_REGION": "ap-northeast-1"}
    )
    assert (s.endpoint_url, s.region, s.table_prefix) == (None, "ap-northeast-1", "prod")
    s = DynamoDBSettings.from_url("dynamodb://", environ={"AWS_DEFAULT_REGION": "sa-east-1"})
    assert s.region == "sa-east-1"


def test_tls_and_default_port():
    s = DynamoDBSettings.from_url("dynamodb://dynamo.example:8443?tls=true", environ={})
    assert s.endpoint_url == "https://dynamo.example:8443"
    s = DynamoDBSettings.from_url("dynamodb://dynamo.example", environ={})
    assert s.endpoint_url == "http://dynamo.example"
    s = DynamoDBSettings.from_url("dynamodb://[::1]:8000", environ={})
    assert s.endpoint_url == "http://[::1]:8000"


def test_table_prefix_underscore_spelling_is_accepted():
    s = DynamoDBSettings.from_url("dynamodb://h:1?table_prefix=a_b", environ={})
    assert s.table_prefix == "a_b"


@pytest.mark.parametrize(
    "url, message",
    [
        ("sqlite:///x", "not a dynamodb"),
        ("dynamodb://h:1?regoin=x", "unknown dynamodb URL parameter"),
        ("dynamodb://user:pw@h:1", "credentials do not belong"),
        ("dynamodb://h:99999", "invalid port"),
        ("dynamodb://h:1?table-prefix=bad/prefix", "table prefix"),
    ],
)
def test_bad_urls(url, message):
    with pytest.raises(ValueError, match=message):
        DynamoDBSettings.from_url(url, environ={})


def test_environment_keys_are_read():
    env = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": "tok"}
    s = DynamoDBSettings.from_url("dynamodb://", environ=env)
    assert s.resolve_credentials() == (KEY_ID, SECRET, "tok")


def test_no_credentials_on_aws_means_default_chain(monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    s = DynamoDBSettings.from_url("dynamodb://?region=us-west-2", environ={})
    assert s.resolve_credentials() is None


def test_local_endpoint_without_credentials_gets_dummy_ones(monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    s = DynamoDBSettings.from_url("dynamodb://127.0.0.1:8000", environ={})
    key_id, secret, token = s.resolve_credentials()
    assert key_id and secret and token is None


def test_credentials_directory_like_a_kubernetes_secret(tmp_path):
    (tmp_path / "access-key-id").write_text(KEY_ID + "\n")
    (tmp_path / "secret-access-key").write_text(SECRET + "\n")
    s = DynamoDBSettings(endpoint_url=None, credentials_file=str(tmp_path))
    assert s.resolve_credentials() == (KEY_ID, SECRET, None)
    (tmp_path / "session-token").write_text("session\n")
    assert s.resolve_credentials() == (KEY_ID, SECRET, "session")


def test_credentials_directory_with_env_style_names(tmp_path):
    (tmp_path / "AWS_ACCESS_KEY_ID").write_text(KEY_ID)
    (tmp_path / "AWS_SECRET_ACCESS_KEY").write_text(SECRET)
    s = DynamoDBSettings(credentials_file=str(tmp_path))
    assert s.resolve_credentials()[:2] == (KEY_ID, SECRET)


def test_credentials_directory_without_keys_is_a_clear_error(tmp_path):
    s = DynamoDBSettings(credentials_file=str(tmp_path))
    with pytest.raises(JournalError, match="access-key-id"):
        s.resolve_credentials()


def test_shared_credentials_file_and_profile(tmp_path):
    path = tmp_path / "credentials"
    path.write_text(
        f"[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"
        "[ops]\naws_access_key_id = OPSKEY\naws_secret_access_key = opssecret\n"
        "aws_session_token = opstoken\n"
    )
    s = DynamoDBSettings.from_url("dynamodb://", environ={"AWS_SHARED_CREDENTIALS_FILE": str(path)})
    assert s.resolve_credentials() == (KEY_ID, SECRET, None)
    s = DynamoDBSettings.from_url(
        "dynamodb://?profile=ops", environ={"AWS_SHARED_CREDENTIALS_FILE": str(path)}
    )
    assert s.resolve_credentials() == ("OPSKEY", "opssecret", "opstoken")
    s = DynamoDBSettings.from_url(
        "dynamodb://", environ={"AWS_SHARED_CREDENTIALS_FILE": str(path), "AWS_PROFILE": "nope"}
    )
    with pytest.raises(JournalError, match="no keys for profile 'nope'"):
        s.resolve_credentials()


def test_credentials_file_named_in_the_url_wins_over_environment_keys(tmp_path):
    (tmp_path / "access-key-id").write_text("FILEKEY")
    (tmp_path / "secret-access-key").write_text("filesecret")
    env = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    s = DynamoDBSettings.from_url(f"dynamodb://?credentials-file={tmp_path}", environ=env)
    assert s.resolve_credentials()[:2] == ("FILEKEY", "filesecret")
    # environment keys win over AWS_SHARED_CREDENTIALS_FILE (as with the AWS SDKs)
    s = DynamoDBSettings.from_url(
        "dynamodb://", environ={**env, "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path)}
    )
    assert s.resolve_credentials()[:2] == (KEY_ID, SECRET)


def test_missing_credentials_file_is_a_clear_error(tmp_path):
    s = DynamoDBSettings(credentials_file=str(tmp_path / "absent"))
    with pytest.raises(JournalError, match="does not exist"):
        s.resolve_credentials()


def test_secrets_never_appear_in_repr_or_description(tmp_path):
    s = DynamoDBSettings(
        endpoint_url="http://127.0.0.1:8000",
        access_key_id=KEY_ID,
        secret_access_key=SECRET,
        session_token="tok-secret",
    )
    for text in (repr(s), str(s), s.describe()):
        assert SECRET not in text and KEY_ID not in text and "tok-secret" not in text
    assert "explicit" in repr(s)
