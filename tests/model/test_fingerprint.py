import hashlib
import json

from moon.model.fingerprint import canonical_json, config_hash


class Described:
    model_id = "x"

    def __init__(self, config):
        self.config = config

    def config_dict(self):
        return self.config


def test_hash_is_sha256_of_key_sorted_compact_json():
    a = Described({"b": [1, 2], "a": {"y": 1, "x": "é"}})
    expected = hashlib.sha256(json.dumps({"a": {"x": "é", "y": 1}, "b": [1, 2]}, separators=(",", ":"),
                                         ensure_ascii=False).encode()).hexdigest()
    assert config_hash(a) == expected
    assert config_hash(Described({"a": {"x": "é", "y": 1}, "b": [1, 2]})) == expected
    assert config_hash(Described({"a": {"x": "é", "y": 2}, "b": [1, 2]})) != expected
    assert canonical_json({"b": 1, "a": 2}) == '{"a":2,"b":1}'
