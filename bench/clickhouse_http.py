"""
The peers' runners' view of ClickHouse, outside the timed part: a query over HTTP and a
table's row count. Imported by bench/peer/run_peer.py and bench/peer/aspects/run_aspects.py,
each in its own virtualenv (with `requests`, which the peers install).
"""


class ClickHouse:
    def __init__(self, url, user, password, timeout=60):
        import requests

        self.session = requests.Session()
        self.url = url
        self.auth = (user, password)
        self.timeout = timeout

    def query(self, sql):
        response = self.session.post(self.url, data=sql.encode(), auth=self.auth, timeout=self.timeout)
        if response.status_code != 200:
            raise RuntimeError(f"ClickHouse: {response.status_code} {response.text.strip()[:500]}")
        return response.text

    def count(self, database, table):
        """The table's rows, or None when it does not exist."""
        if self.query(f"EXISTS TABLE `{database}`.`{table}`").strip() != "1":
            return None
        return int(self.query(f"SELECT count() FROM `{database}`.`{table}`").strip())
