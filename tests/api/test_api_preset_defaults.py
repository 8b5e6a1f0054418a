"""A preset's defaults, through the API: the stored spec of a minimal job has them, as the catalog lists
them; an explicit optimizer and lr stay as given."""

from __future__ import annotations


def test_the_stored_spec_has_the_presets_defaults_that_the_catalog_lists(in_process_api):
    catalog = in_process_api.http.get("/v1/catalog").json()
    defaults = {preset["name"]: preset["defaults"] for preset in catalog["presets"]}
    assert defaults["alexnet"]["optimizer"]["type"] == "adam"
    assert defaults["alexnet"]["lr"]["sgd"] < defaults["lenet5"]["lr"]["sgd"]

    for arch, preset in defaults.items():
        job = in_process_api.submit({"dataset": {"name": "digits"}, "model": {"arch": arch}})
        stored = in_process_api.job(job["id"])["spec"]
        assert stored["optimizer"] == preset["optimizer"], arch
        assert stored["training"]["epochs"] == preset["epochs"], arch
        assert job["name"] == f"{arch}-{preset['optimizer']['type']}"

    # An optimizer without lr gets the preset's lr for it; an explicit one and explicit epochs stay.
    sgd = in_process_api.submit(
        {"dataset": {"name": "digits"}, "model": {"arch": "alexnet"}, "optimizer": {"type": "sgd"}}
    )
    assert sgd["spec"]["optimizer"] == {"type": "sgd", "lr": defaults["alexnet"]["lr"]["sgd"]}
    given = {"type": "sgd", "lr": 0.3}
    explicit = in_process_api.submit(
        {
            "dataset": {"name": "digits"},
            "model": {"arch": "alexnet"},
            "optimizer": given,
            "training": {"epochs": 2},
        }
    )
    assert explicit["spec"]["optimizer"] == given and explicit["spec"]["training"]["epochs"] == 2
