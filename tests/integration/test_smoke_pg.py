from sqlalchemy import text

from tests.factories import event, insert, modify, remove


def test_insert_modify_remove_on_postgres(replicator, pg_engine, pg_schema):
    result = replicator.process(
        event(insert({"Id": 1}, 10, {"a": "x"}), modify({"Id": 1}, 11, {"a": "y"}))["Records"]
    )
    assert result.failed == 0 and result.applied == 1
    with pg_engine.connect() as c:
        row = c.execute(
            text(
                "select item::text, mod(_cdc_seq, 1e40)::int8 s, _cdc_deleted "
                f'from "{pg_schema}".orders'
            )
        ).one()
    assert row == ('{"a": "y", "Id": 1}', 11, False)
    replicator.process([remove({"Id": 1}, 12)])
    with pg_engine.connect() as c:
        row = c.execute(
            text(
                "select item::text, mod(_cdc_seq, 1e40)::int8 s, _cdc_deleted "
                f'from "{pg_schema}".orders'
            )
        ).one()
    assert row == ('{"a": "y", "Id": 1}', 12, True)
