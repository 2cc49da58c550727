from camd.redact import mask_url


def test_password_masked_user_kept() -> None:
    assert mask_url("rtsp://admin:hunter2@10.0.0.5:554/s1") == "rtsp://admin:***@10.0.0.5:554/s1"


def test_lone_token_masked() -> None:
    assert mask_url("https://s3cr3ttoken@qdrant.local/x") == "https://***@qdrant.local/x"


def test_password_with_slash_and_at_masked_whole() -> None:
    masked = mask_url("rtsp://u:pa/ss@w0rd@cam/stream")
    assert "pa/ss" not in masked and "w0rd" not in masked and masked.endswith("@cam/stream")


def test_urls_without_credentials_and_paths_unchanged() -> None:
    for url in ("rtsp://cam:554/s1", "/videos/a.mp4", "file:///tmp/a.mp4"):
        assert mask_url(url) == url
