"""Reference cards: the built-in copy, schema errors that name the file and the field, file specifications."""
import json

import pytest

from pcloud.validation.reference import BUILTIN, ReferenceError, builtin_path, load_card, parse_file_specs


def test_builtin_card_loads_with_its_source():
    card = load_card("calogan-geant4")
    assert card.geometry == "calogan" and card.particles == ["e+", "gamma", "pi+"]
    assert card.energy_gev == (1.0, 100.0) and card.spectrum == "uniform" and card.mode == "total"
    assert "hep-lbdl/CaloGAN" in card.source
    assert card.stats("eratio0", "e+")["median"] == pytest.approx(0.058)
    assert card.stats("total_energy_over_E", "pi+")["fraction_below_2.4_gev"] == pytest.approx(0.42)
    assert builtin_path("calogan-geant4").name == BUILTIN["calogan-geant4"]


def _write(tmp_path, d, name="card.json"):
    p = tmp_path / name
    p.write_text(d if isinstance(d, str) else json.dumps(d))
    return p


def _good():
    return json.loads(builtin_path("calogan-geant4").read_text())


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.pop("quantities"), "quantities: missing"),
    (lambda d: d["configuration"].pop("geometry"), "configuration.geometry: missing"),
    (lambda d: d["configuration"].update(particles=["e+", "muon"]), "unknown particle 'muon'"),
    (lambda d: d["configuration"].update(energy_gev=[100, 1]), "0 < lo <= hi"),
    (lambda d: d["quantities"].update(width_mm={"e+": {"median": 1.0}}), "quantities.width_mm: unknown quantity"),
    (lambda d: d["quantities"]["f0"]["e+"].update(median="0.17"), r"quantities.f0.e\+.median: expected a finite"),
    (lambda d: d["quantities"]["f0"]["e+"].update(p16=0.5), "quantiles not ordered"),
    (lambda d: d["quantities"]["f0"]["e+"].pop("p84"), "give all of p16, median, p84"),
    (lambda d: d["quantities"]["f0"].update({"pi0": {"median": 0.1}}), "particle not listed"),
    (lambda d: d["quantities"]["f0"]["e+"].update(p99=0.3), "unknown statistic"),
])
def test_schema_errors_name_file_and_field(tmp_path, mutate, match):
    d = _good()
    mutate(d)
    p = _write(tmp_path, d)
    with pytest.raises(ReferenceError, match=match) as err:
        load_card(p)
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_missing_and_garbled_cards(tmp_path):
    with pytest.raises(ReferenceError, match="no such reference card"):
        load_card(tmp_path / "nope.json")
    p = _write(tmp_path, '{"source": "x", "quantities": {')
    with pytest.raises(ReferenceError, match=r"not valid JSON \(line 1"):
        load_card(p)
    with pytest.raises(ReferenceError, match="expected a JSON object"):
        load_card(_write(tmp_path, "[1, 2]", "list.json"))


def test_file_specs(tmp_path):
    f = tmp_path / "eplus.hdf5"
    f.write_bytes(b"")
    refs = parse_file_specs([f"{f}:e+", f"{f}:photon"])
    assert [r.particle for r in refs] == ["e+", "gamma"] and refs[0].path == f
    with pytest.raises(ReferenceError, match="FILE:PARTICLE"):
        parse_file_specs([str(f)])
    with pytest.raises(ReferenceError, match="unknown particle 'kaon'"):
        parse_file_specs([f"{f}:kaon"])
    with pytest.raises(ReferenceError, match="no such reference file"):
        parse_file_specs([f"{tmp_path / 'missing.hdf5'}:e+"])
