"""Tests for tether.oauth.pkce (AUTHZ-1, AUTHZ-3; RFC 7636 §4.1–4.2, Appendix B)."""

from __future__ import annotations

import pytest

from tether.errors import UsageError
from tether.oauth.pkce import CODE_CHALLENGE_METHOD, code_challenge, code_verifier

# RFC 7636 Appendix B: the 32 octets, the verifier and the challenge.
APPENDIX_B_OCTETS = bytes(
    [116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186,
     22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121]
)  # fmt: skip
APPENDIX_B_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
APPENDIX_B_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_rfc7636_appendix_b_vector() -> None:
    assert code_verifier(APPENDIX_B_OCTETS) == APPENDIX_B_VERIFIER
    assert code_challenge(APPENDIX_B_VERIFIER) == APPENDIX_B_CHALLENGE
    assert CODE_CHALLENGE_METHOD == "S256"


@pytest.mark.parametrize(("size", "length"), [(32, 43), (64, 86), (96, 128)])
def test_verifier_lengths(size: int, length: int) -> None:
    verifier = code_verifier(bytes(range(size)))
    assert len(verifier) == length
    assert "=" not in verifier
    code_challenge(verifier)  # accepted


@pytest.mark.parametrize("size", [0, 31, 97])
def test_verifier_needs_32_to_96_octets(size: int) -> None:
    with pytest.raises(UsageError, match="32 to 96"):
        code_verifier(b"\x00" * size)


@pytest.mark.parametrize(
    "verifier",
    ["a" * 42, "a" * 129, "a" * 42 + "=", "a" * 42 + "+", "ä" * 43, ""],
)
def test_challenge_refuses_bad_verifiers(verifier: str) -> None:
    with pytest.raises(UsageError, match="43-128"):
        code_challenge(verifier)
