"""The sums a `pg_dump` is verified by: the rows of each table whatever their order, and the dumps' objects
whatever their ids."""

import io

from hosting.paas.service_backups import table_sums, toc_entries

DATA = b"""--
-- PostgreSQL database dump
--
\\restrict KEY1
SET client_encoding = 'UTF8';
COPY public.t (id, body) FROM stdin;
1\tone
2\ttwo
\\.
COPY public.empty (x) FROM stdin;
\\.
SELECT pg_catalog.setval('public.t_id_seq', 2, true);
\\unrestrict KEY1
"""


def sums(data: bytes) -> dict[str, str]:
    return table_sums(io.BytesIO(data))


def test_rows_count_whatever_their_order_and_the_restrict_key() -> None:
    reordered = DATA.replace(b"1\tone\n2\ttwo\n", b"2\ttwo\n1\tone\n").replace(b"KEY1", b"OTHER")
    assert sums(reordered) == sums(DATA)
    assert set(sums(DATA)) == {"COPY public.t (id, body) FROM stdin;", "COPY public.empty (x) FROM stdin;", ""}


def test_a_changed_missing_or_doubled_row_changes_its_tables_sum_only() -> None:
    table = "COPY public.t (id, body) FROM stdin;"
    for changed in (b"1\tone\n2\ttwo!\n", b"1\tone\n", b"1\tone\n2\ttwo\n2\ttwo\n"):
        found = sums(DATA.replace(b"1\tone\n2\ttwo\n", changed))
        assert found[table] != sums(DATA)[table]
        assert {k: v for k, v in found.items() if k != table} == {k: v for k, v in sums(DATA).items() if k != table}
    assert sums(DATA.replace(b"true);", b"false);"))[""] != sums(DATA)[""]  # a sequence's state


def test_objects_compare_without_their_dump_ids_and_oids_nor_the_database_itself() -> None:
    taken = ";\n; Archive created\n215; 1259 16386 TABLE public t app\n3330; 0 16386 TABLE DATA public t app\n"
    taken += "3340; 1262 16384 DATABASE - app app\n3341; 0 0 DATABASE PROPERTIES - app app\n"
    restored = "3; 1259 24576 TABLE public t app\n9; 0 24576 TABLE DATA public t app\n"
    assert toc_entries(taken) == toc_entries(restored)
    assert toc_entries(restored + "10; 1259 24580 TABLE public u app\n") != toc_entries(taken)
