"""A tiny real PyFlink job for the cluster tests: datagen -> a Python UDF -> keyed count (state) -> blackhole.

Submitted by tests/stack/test_flink_cluster.py through the same `flink run -py` path as flink/job.py.
The Python UDF makes the TaskManager start a Python worker, so python.executable is exercised too.
"""

from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment
from pyflink.table.udf import udf

JOB_NAME = "rtfd-test-datagen"


@udf(result_type=DataTypes.BIGINT())
def bucket(n: int) -> int:
    return n % 16


def main() -> None:
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    conf.set("pipeline.name", JOB_NAME)
    conf.set("parallelism.default", "1")
    t_env.create_temporary_function("bucket", bucket)
    t_env.execute_sql(
        "CREATE TABLE numbers (n BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '20', "
        "'fields.n.kind' = 'random', 'fields.n.min' = '0', 'fields.n.max' = '1000')"
    )
    t_env.execute_sql("CREATE TABLE sink (b BIGINT, cnt BIGINT) WITH ('connector' = 'blackhole')")
    t_env.execute_sql("INSERT INTO sink SELECT bucket(n) AS b, COUNT(*) AS cnt FROM numbers GROUP BY bucket(n)")


if __name__ == "__main__":
    main()
