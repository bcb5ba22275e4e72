"""The report's run facts say where the fan-out stages ran (run.compute)."""

from medistill.audit.report import _run_facts


def test_compute_fact_names_the_cluster_or_local_processes() -> None:
    dask = {"backend": "dask", "scheduler": "tcp://10.0.0.5:8786", "n_workers": 2, "tasks": 17}
    facts = dict(_run_facts({"compute": dask}))
    assert facts["Compute"] == "Dask cluster tcp://10.0.0.5:8786, 2 workers, 17 tasks"
    local = {"backend": "local", "scheduler": None, "n_workers": None, "tasks": 9}
    assert dict(_run_facts({"compute": local}))["Compute"] == "local processes (9 units of work)"
    assert "Compute" not in dict(_run_facts({}))
