from accelerator.labels import is_valid_label, label_from_host, new_label


def test_new_labels_are_valid_and_distinct():
    labels = {new_label() for _ in range(2000)}
    assert len(labels) == 2000
    assert all(is_valid_label(label) for label in labels)


def test_label_from_host_accepts_ports_and_case():
    assert label_from_host("abcdefgh2345.m.localhost:8480", "m.localhost") == "abcdefgh2345"
    assert label_from_host("ABCDEFGH2345.M.LOCALHOST", "m.localhost") == "abcdefgh2345"


def test_label_from_host_rejects_bad_hosts():
    for host in [
        "",
        "m.localhost",
        "abcdefgh2345.other.io",
        "a.b.m.localhost",
        "abc.m.localhost",
        "abcdefgh23456789.m.localhost",
        "abcdéfgh2345.m.localhost",
        "abcdefgh2345",
        "abcdefgh0189.m.localhost",
        "x" * 300 + ".m.localhost",
        "../etc.m.localhost",
    ]:
        assert label_from_host(host, "m.localhost") is None, host
