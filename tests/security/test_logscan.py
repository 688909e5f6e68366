"""The log scanner (rtfd.security.logscan) finds planted card numbers and secrets and skips look-alikes."""

from __future__ import annotations

import time
from pathlib import Path

from rtfd.security import logscan

NOW = time.time()
VISA = "4111111111111111"  # the classic Luhn-valid test number
AMEX = "378282246310005"


def scan(text: str, secrets: dict[str, str] | None = None) -> list[logscan.Finding]:
    return logscan.scan_text(Path("x.log"), text.splitlines(), secrets, NOW)


def test_finds_a_card_number_in_a_log_line_and_masks_it():
    found = scan(f"INFO producer: sent 3 records\nWARN bad row pan={VISA} rejected\n")
    assert [(f.line, f.kind, f.what) for f in found] == [(2, "card number", "411111******1111")]
    assert VISA not in str(found[0])


def test_finds_printed_groups_and_other_lengths():
    lines = ["card 4111 1111 1111 1111 declined", "card 4111-1111-1111-1111", f"amex {AMEX}",
             "amex 3782 822463 10005", "13 digits 4222222222222", f'{{"pan": "{VISA}"}}', f"card{VISA}"]
    assert [f.line for f in scan("\n".join(lines))] == [1, 2, 3, 4, 5, 6, 7]


def test_skips_non_luhn_runs_longer_runs_and_short_numbers():
    assert not scan("offset 4111111111111112 is not Luhn-valid")
    assert not scan(f"twenty digits 9{VISA}000 are not a card number")
    assert not scan("offset=123456789012 partition=3 ts 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16")


def test_skips_recent_epoch_timestamps_but_not_old_looking_ones():
    ms = int(NOW * 1000)
    stamps = [str(ms + d) for d in range(40)]  # some are Luhn-valid by chance; none is a card number
    assert any(logscan.luhn_valid(s) for s in stamps)
    assert not scan(" ".join(stamps))
    assert not scan(" ".join(str(int(NOW * 1e6) + d) for d in range(40)))
    # 13-digit Visa numbers start with 4: as epoch millis that is the year 2100+, far outside the window
    assert scan("4222222222222")


def test_skips_digit_runs_inside_hex_ids_but_not_glued_to_words():
    hex_id = f"a0{VISA}bf"  # a Flink vertex id or HMAC token that happens to hold a long digit run
    assert not scan(f"job vertex {hex_id} RUNNING")
    assert scan(f"card_number:pan{VISA}x")


def test_finds_secrets_plain_and_url_encoded_by_name_only():
    secret = "s3cr3t/with+chars"
    found = scan(f"connecting to postgresql://rtfd_flink:{secret}@127.0.0.1/rtfd\n"
                 "dsn=postgresql://u:s3cr3t%2Fwith%2Bchars@h/db\n", {"flink_db_password": secret})
    assert [(f.line, f.what) for f in found] == [(1, "flink_db_password"), (2, "flink_db_password")]
    assert all(secret not in str(f) for f in found)


def test_short_secret_values_are_not_searched():
    assert not scan("user rtfd connected", {"pg_password": "rtfd"})


def test_scans_folders_recursively_and_reads_binary_noise(tmp_path):
    (tmp_path / "logs" / "nested").mkdir(parents=True)
    (tmp_path / "logs" / "clean.log").write_text("all good\n")
    (tmp_path / "logs" / "nested" / "dump.bin").write_bytes(b"\xff\xfe\x00 pan " + VISA.encode() + b"\n")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "registry_password").write_text("0123456789abcdef\n")
    (tmp_path / "logs" / "registry.log").write_text("auth with 0123456789abcdef\n")
    found = logscan.scan_files(logscan.stack_log_dirs(tmp_path), logscan.stack_secrets(tmp_path), NOW)
    assert sorted((f.path.name, f.kind) for f in found) == [("dump.bin", "card number"), ("registry.log", "secret")]


def test_main_exits_non_zero_on_findings(tmp_path, capsys):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.log").write_text("fine\n")
    assert logscan.main([str(tmp_path)]) == 0
    (tmp_path / "logs" / "b.log").write_text(f"pan {VISA}\n")
    assert logscan.main([str(tmp_path)]) == 1
    assert "411111******1111" in capsys.readouterr().out
