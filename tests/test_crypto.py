"""hqms.crypto against published vectors and against independent implementations.

gmssl (pure Python) is the independent SM3/SM4/SM2 reference; OpenSSL's command line, when
present, checks that our SM2 ciphertexts are the standard ones investigators' tools read.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from gmssl import sm3 as gm_sm3
from gmssl.sm2 import CryptSM2
from gmssl.sm4 import SM4_ENCRYPT, ZERO, CryptSM4

from hqms import crypto

SM4_VECTOR_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")


def gm_sm3_digest(data: bytes) -> bytes:
    return bytes.fromhex(gm_sm3.sm3_hash(list(data)))


def rfc2104_hmac_gm_sm3(key: bytes, msg: bytes) -> bytes:
    """HMAC written out from RFC 2104 over gmssl's SM3 (block size 64)."""
    if len(key) > 64:
        key = gm_sm3_digest(key)
    key = key.ljust(64, b"\0")
    inner = gm_sm3_digest(bytes(b ^ 0x36 for b in key) + msg)
    return gm_sm3_digest(bytes(b ^ 0x5C for b in key) + inner)


# --------------------------------------------------------------------------- known answers

def test_sm3_vectors_agree_with_gmssl() -> None:
    vectors = {  # GB/T 32905-2016 appendix A
        b"abc": "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0",
        b"abcd" * 16: "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732",
    }
    for message, expected in vectors.items():
        assert crypto.sm3(message).hex() == expected
        assert gm_sm3_digest(message).hex() == expected


def test_sm4_block_vector_and_random_blocks_agree_with_gmssl() -> None:
    def openssl_block(key: bytes, block: bytes) -> bytes:
        encryptor = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
        return encryptor.update(block) + encryptor.finalize()

    def gmssl_block(key: bytes, block: bytes) -> bytes:
        sm4 = CryptSM4(padding_mode=ZERO)
        sm4.set_key(key, SM4_ENCRYPT)
        return sm4.crypt_ecb(block)[:16]

    expected = "681edf34d206965e86b3e94f536e4246"  # GB/T 32907-2016 appendix A.1
    assert openssl_block(SM4_VECTOR_KEY, SM4_VECTOR_KEY).hex() == expected
    assert gmssl_block(SM4_VECTOR_KEY, SM4_VECTOR_KEY).hex() == expected
    for _ in range(20):
        key, block = os.urandom(16), os.urandom(16)
        assert openssl_block(key, block) == gmssl_block(key, block)


def test_sm4_gcm_matches_rfc8998_vector() -> None:
    nonce = bytes.fromhex("00001234567800000000abcd")
    aad = bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    plaintext = bytes.fromhex("".join(c * 16 for c in "abcdefea"))
    blob = nonce + bytes.fromhex(
        "17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735d82710ca5c22f0ccfa7cbf"
        "93d496ac15a56834cbcf98c397b4024a2691233b8d" "83de3541e4c2b58177e065a9bf7b62ec")
    assert crypto.sm4_gcm_decrypt(SM4_VECTOR_KEY, blob, aad) == plaintext


def test_hmac_sm3_agrees_with_rfc2104_over_gmssl_and_stdlib() -> None:
    for key_len, msg_len in [(32, 18), (16, 0), (64, 100), (100, 7), (1, 64)]:
        key, msg = os.urandom(key_len), os.urandom(msg_len)
        expected = rfc2104_hmac_gm_sm3(key, msg)
        assert crypto.hmac_sm3(key, msg) == expected
        assert hmac.digest(key, msg, "sm3") == expected


# --------------------------------------------------------------------------- pseudonyms

def test_pseudonyms_are_deterministic_per_key_and_differ_across_keys_and_contexts() -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    value = "110105199001011234"  # shape of an ID number; synthetic
    p = crypto.pseudonym(k1, value)
    assert re.fullmatch(r"[0-9a-f]{64}", p)
    assert crypto.pseudonym(k1, value) == p
    assert crypto.pseudonym(k2, value) != p
    assert crypto.pseudonym(k1, value, context="A1234567") != p
    assert crypto.pseudonym(k1, value, context="A1234567") != crypto.pseudonym(k1, value, context="B7654321")
    # context and value are separated unambiguously
    assert crypto.pseudonym(k1, "12", context="3") != crypto.pseudonym(k1, "2", context="31")


def test_pseudonym_array_matches_scalar_with_nulls_and_contexts() -> None:
    key = os.urandom(32)
    values = ["a1", None, "中文病案号", "", "a1"]
    orgs = ["ORG1", "ORG2", None, "ORG1", "ORG2"]
    plain = crypto.pseudonym_array(key, pa.array(values)).to_pylist()
    assert plain == [None if v is None else crypto.pseudonym(key, v) for v in values]
    constant = crypto.pseudonym_array(key, pa.chunked_array([values[:2], values[2:]]), "ORG1")
    assert constant.to_pylist() == [None if v is None else crypto.pseudonym(key, v, "ORG1") for v in values]
    per_row = crypto.pseudonym_array(key, pa.array(values), pa.array(orgs)).to_pylist()
    assert per_row == [None if v is None else crypto.pseudonym(key, v, o) for v, o in zip(values, orgs)]
    assert per_row[0] != per_row[4]  # same record id, different hospital


def test_arrow_udfs_run_inside_duckdb() -> None:
    key, field_key = os.urandom(32), crypto.generate_sm4_key()
    con = duckdb.connect()
    con.create_function("pid", lambda v: crypto.pseudonym_array(key, v), ["VARCHAR"], "VARCHAR",
                        type="arrow", null_handling="special")
    con.create_function("enc", lambda v, a: crypto.encrypt_array("field-t", field_key, v, a),
                        ["VARCHAR", "VARCHAR"], "BLOB", type="arrow", null_handling="special",
                        side_effects=True)
    rows = con.execute("""
        SELECT v, pid(v), enc(v, 'P13|' || i) , i FROM (
          SELECT i, CASE WHEN i % 7 = 0 THEN NULL ELSE 'id' || i END AS v FROM range(5000) t(i))
        ORDER BY i""").fetchall()
    for value, pid, blob, i in rows:
        if value is None:
            assert pid is None and blob is None
        else:
            assert pid == crypto.pseudonym(key, value)
            assert crypto.decrypt_field({"field-t": field_key}, blob, f"P13|{i}") == value


# --------------------------------------------------------------------------- SM4-GCM values

def test_gcm_round_trip_and_every_tamper_fails() -> None:
    key = crypto.generate_sm4_key()
    blob = crypto.sm4_gcm_encrypt(key, b"original zip bytes", b"u1")
    assert crypto.sm4_gcm_decrypt(key, blob, b"u1") == b"original zip bytes"
    assert crypto.sm4_gcm_encrypt(key, b"same", b"u1") != crypto.sm4_gcm_encrypt(key, b"same", b"u1")
    for position in (0, 12, len(blob) - 1):  # nonce, ciphertext, tag
        altered = bytearray(blob)
        altered[position] ^= 1
        with pytest.raises(crypto.DecryptionError):
            crypto.sm4_gcm_decrypt(key, bytes(altered), b"u1")
    with pytest.raises(crypto.DecryptionError):
        crypto.sm4_gcm_decrypt(key, blob, b"u2")
    with pytest.raises(crypto.DecryptionError):
        crypto.sm4_gcm_decrypt(crypto.generate_sm4_key(), blob, b"u1")
    with pytest.raises(crypto.DecryptionError):
        crypto.sm4_gcm_decrypt(key, blob[:20])
    with pytest.raises(crypto.CryptoError):
        crypto.sm4_gcm_encrypt(b"short", b"x")


def test_encrypt_array_binds_key_id_and_row_context() -> None:
    old, new = crypto.generate_sm4_key(), crypto.generate_sm4_key()
    keys = {"field-old": old, "field-new": new}
    cells = crypto.encrypt_array("field-new", new, pa.array(["A1", None, "B2"]),
                                 pa.array(["row1", "row2", "row3"])).to_pylist()
    assert cells[1] is None
    assert crypto.field_key_id(cells[0]) == "field-new"
    assert crypto.decrypt_field(keys, cells[0], "row1") == "A1"
    assert crypto.decrypt_field(keys, cells[2], "row3") == "B2"
    with pytest.raises(crypto.DecryptionError):  # moved to another row
        crypto.decrypt_field(keys, cells[0], "row3")
    relabelled = cells[0].replace(b"field-new", b"field-old", 1)
    assert crypto.field_key_id(relabelled) == "field-old"
    with pytest.raises(crypto.DecryptionError):  # header is authenticated
        crypto.decrypt_field({"field-old": new}, relabelled, "row1")
    with pytest.raises(crypto.CryptoError, match="not in the keyring"):
        crypto.decrypt_field({"field-old": old}, cells[0], "row1")
    older = crypto.encrypt_array("field-old", old, pa.array(["C3"]), "P13").to_pylist()[0]
    assert crypto.decrypt_field(keys, older, "P13") == "C3"


# --------------------------------------------------------------------------- files

def _write_pseudo_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as handle:
        for i in range(0, size, len(block)):
            chunk = (block[i % 251:] + block[:i % 251])[: size - i]  # vary chunks cheaply
            digest.update(chunk)
            handle.write(chunk)
    return digest.hexdigest()


def test_large_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    size = 65 * 1024 * 1024 + 123
    src, enc, out = tmp_path / "big.zip", tmp_path / "big.zip.sm4", tmp_path / "back.zip"
    plain_sha = _write_pseudo_random(src, size)
    key = crypto.generate_sm4_key()
    tracemalloc.start()
    try:
        sealed = crypto.encrypt_file(key, src, enc, b"u-big")
        opened = crypto.decrypt_file(key, enc, out, b"u-big")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"peak Python allocation {peak} bytes: file was not streamed"
    assert sealed.plaintext_sha256 == opened.plaintext_sha256 == plain_sha
    assert sealed.plaintext_size == opened.plaintext_size == size == out.stat().st_size
    assert sealed.ciphertext_size == enc.stat().st_size == size + 28
    assert sealed.ciphertext_sha256 == opened.ciphertext_sha256


def test_file_format_is_one_gcm_message_and_tampering_leaves_no_output(tmp_path: Path) -> None:
    key = crypto.generate_sm4_key()
    src, enc, out = tmp_path / "a.zip", tmp_path / "a.sm4", tmp_path / "out.zip"
    src.write_bytes(os.urandom(3 * crypto.FILE_CHUNK_BYTES + 5))
    crypto.encrypt_file(key, src, enc, b"u1")
    assert crypto.sm4_gcm_decrypt(key, enc.read_bytes(), b"u1") == src.read_bytes()
    data = bytearray(enc.read_bytes())
    data[2 * crypto.FILE_CHUNK_BYTES] ^= 0x80  # a bit deep inside the stream
    enc.write_bytes(bytes(data))
    with pytest.raises(crypto.DecryptionError, match="authentication failed"):
        crypto.decrypt_file(key, enc, out, b"u1")
    enc.write_bytes(bytes(data[:-16]))  # truncated
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt_file(key, enc, out, b"u1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.sm4", "a.zip"]


# --------------------------------------------------------------------------- SM2

def test_sm2_scalar_multiplication_agrees_with_gmssl_and_the_standard() -> None:
    """Our Jacobian arithmetic against gmssl's on edge and random scalars and points, and the
    key pair of GB/T 32918.5-2017 Appendix A."""
    from gmssl.sm2 import default_ecc_table

    reference = CryptSM2(private_key="", public_key="", ecc_table=default_ecc_table)
    g, n = default_ecc_table["g"], int(default_ecc_table["n"], 16)
    scalars = [1, 2, 3, 15, 16, 17, 255, 256, n - 2, n - 1] + [secrets.randbelow(n - 1) + 1 for _ in range(20)]
    for k in scalars:
        point = crypto._scalar_mult(secrets.randbelow(n - 1) + 1, g)
        assert crypto._scalar_mult(k, g) == reference._kg(k, g)
        assert crypto._scalar_mult(k, point) == reference._kg(k, point)
    private = "3945208f7b2144b13f36e38ac6d39f95889393692860b51a42fb81ef4df7c5b8"
    assert crypto.sm2_public_from_private(private) == (
        "04" "09f9df311e5421a150dd7d161e4bc5c672179fad1833fc076bb08ff356f35020"
        "ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13")


def test_sm2_wrap_round_trip_and_gmssl_decrypts_it() -> None:
    private_hex, public_hex = crypto.sm2_generate_keypair()
    assert re.fullmatch(r"[0-9a-f]{64}", private_hex) and re.fullmatch(r"04[0-9a-f]{128}", public_hex)
    assert crypto.sm2_public_from_private(private_hex) == public_hex
    data_key = crypto.generate_sm4_key()
    blob = crypto.sm2_wrap(public_hex, data_key)
    assert len(blob) == 65 + 32 + 16 and blob != crypto.sm2_wrap(public_hex, data_key)
    assert crypto.sm2_unwrap(private_hex, blob) == data_key
    independent = CryptSM2(private_key=private_hex, public_key="", mode=1)  # C1C3C2, C1 without 04
    assert independent.decrypt(blob[1:]) == data_key


def test_sm2_unwrap_rejects_wrong_key_and_tampering() -> None:
    private_hex, public_hex = crypto.sm2_generate_keypair()
    other_private, _ = crypto.sm2_generate_keypair()
    blob = crypto.sm2_wrap(public_hex, b"k" * 16)
    with pytest.raises(crypto.DecryptionError, match="wrong private key"):
        crypto.sm2_unwrap(other_private, blob)
    for position in (70, len(blob) - 1):  # C3, C2
        altered = bytearray(blob)
        altered[position] ^= 1
        with pytest.raises(crypto.DecryptionError):
            crypto.sm2_unwrap(private_hex, bytes(altered))
    off_curve = bytearray(blob)
    off_curve[10] ^= 1  # C1.x
    with pytest.raises(crypto.DecryptionError, match="not a point on the curve"):
        crypto.sm2_unwrap(private_hex, bytes(off_curve))


def test_sm2_public_keys_are_validated_and_leading_zero_digits_survive() -> None:
    with pytest.raises(crypto.CryptoError):
        crypto.sm2_public_point("04" + "11" * 64)  # not on the curve
    with pytest.raises(crypto.CryptoError):
        crypto.sm2_public_point("zz")
    # gmssl's lstrip("04") corrupts keys whose x starts with 0 or 4; ours must not.
    for _ in range(300):
        private_hex, public_hex = crypto.sm2_generate_keypair()
        if public_hex[2] in "04":
            break
    else:
        pytest.fail("no key with a leading 0/4 digit in 300 tries")
    assert crypto.sm2_public_point(public_hex[2:]) == public_hex
    assert crypto.sm2_unwrap(private_hex, crypto.sm2_wrap(public_hex, b"data key")) == b"data key"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")
def test_sm2_interoperates_with_openssl(tmp_path: Path) -> None:
    """Investigators may unwrap with standard tools: OpenSSL reads our C1C3C2 and vice versa."""
    from Cryptodome.Util.asn1 import DerOctetString, DerSequence

    pem = tmp_path / "sm2.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "SM2", "-out", str(pem)], check=True,
                   capture_output=True)
    text = subprocess.run(["openssl", "pkey", "-in", str(pem), "-text", "-noout"], check=True,
                          capture_output=True, text=True).stdout

    def field(label: str) -> str:
        match = re.search(label + r":\s*\n((?:\s+[0-9a-f:]+\n)+)", text)
        assert match, text
        return re.sub(r"[\s:]", "", match.group(1))

    private_hex = field("priv")[-64:].rjust(64, "0")
    public_hex = field("pub")
    assert crypto.sm2_public_from_private(private_hex) == public_hex
    data_key = os.urandom(16)

    ours = crypto.sm2_wrap(public_hex, data_key)
    der = DerSequence([int.from_bytes(ours[1:33], "big"), int.from_bytes(ours[33:65], "big"),
                       DerOctetString(ours[65:97]).encode(), DerOctetString(ours[97:]).encode()])
    (tmp_path / "ours.der").write_bytes(der.encode())
    opened = subprocess.run(["openssl", "pkeyutl", "-decrypt", "-inkey", str(pem), "-in",
                             str(tmp_path / "ours.der")], check=True, capture_output=True).stdout
    assert opened == data_key

    (tmp_path / "key.bin").write_bytes(data_key)
    theirs = subprocess.run(["openssl", "pkeyutl", "-encrypt", "-inkey", str(pem), "-in",
                             str(tmp_path / "key.bin")], check=True, capture_output=True).stdout
    seq = DerSequence()
    seq.decode(theirs)
    c3, c2 = DerOctetString(), DerOctetString()
    c3.decode(seq[2])
    c2.decode(seq[3])
    raw = b"\x04" + seq[0].to_bytes(32, "big") + seq[1].to_bytes(32, "big") + c3.payload + c2.payload
    assert crypto.sm2_unwrap(private_hex, raw) == data_key
