"""Who may open the studio: `--auth user:pass` or a file of such lines, and a generated login for `--share`."""

import pytest

from app.auth import SHARE_USER, parse_auth, studio_auth


def test_no_auth_is_an_open_local_studio():
    assert parse_auth(None) == []
    assert studio_auth(None, share=False) == ([], None)


def test_user_colon_password():
    assert parse_auth("ana:s3cret") == [("ana", "s3cret")]
    assert parse_auth(" ana :pass:with:colons") == [("ana", "pass:with:colons")]  # the first colon splits


def test_a_file_of_logins_skips_blanks_and_comments(tmp_path):
    logins = tmp_path / "logins.txt"
    logins.write_text("# the studio's users\nana:one\n\n  ben:two  \n")
    assert parse_auth(str(logins)) == [("ana", "one"), ("ben", "two")]


@pytest.mark.parametrize("value", ["ana", "ana:", ":secret", "   :x"])
def test_a_bad_value_is_named(value):
    with pytest.raises(ValueError, match="`--auth` must be user:password") as raised:
        parse_auth(value)
    assert str(raised.value).endswith(f"the value is {value.strip()!r}")


def test_a_bad_line_in_a_file_names_the_file_and_line(tmp_path):
    logins = tmp_path / "logins.txt"
    logins.write_text("ana:one\nben\n")
    with pytest.raises(ValueError, match=r"line 2 of .*logins.txt.* is 'ben'"):
        parse_auth(str(logins))


def test_a_file_without_logins_is_refused(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody yet\n\n")
    with pytest.raises(ValueError, match="holds no user:password line"):
        parse_auth(str(empty))


def test_sharing_without_auth_generates_a_password():
    credentials, password = studio_auth(None, share=True)
    assert credentials == [(SHARE_USER, password)]
    assert len(password) >= 16
    assert studio_auth(None, share=True)[1] != password  # fresh every time


def test_sharing_with_auth_uses_it():
    assert studio_auth("ana:one", share=True) == ([("ana", "one")], None)
