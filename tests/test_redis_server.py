from tasks.platform.redis_server import redis_server_binary


def test_a_redis_binary_is_available():
    assert redis_server_binary().endswith("redis-server")


def test_redis_fixture_is_a_real_server(redis_client):
    redis_client.set("k", "v")
    assert redis_client.get("k") == b"v"
    assert redis_client.info("server")["redis_version"]
