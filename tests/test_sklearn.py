"""polytask.sklearn.MultiTaskEstimator: scikit-learn's conventions and checks, pipelines,
cross-validation and grid search, and its bad-input errors."""

from __future__ import annotations

import pickle
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from polytask.errors import ConfigError, DataError
from polytask.sklearn import MultiTaskEstimator, infer_task_type

SMALL = {"trunk": (16,), "head": (8,), "batch_size": 32}

NOT_FOR_MULTI_TASK = {
    # predict returns a DataFrame (a column per task) and predict_proba a dict of arrays per
    # task; these checks index or subtract the outputs as arrays. The properties they test
    # (outputs kept by pickling and by a second fit, row-wise predictions) are tested below.
    "check_estimators_pickle": "predict_proba returns a dict per task",
    "check_fit_idempotent": "predict_proba returns a dict per task",
    "check_methods_subset_invariance": "predict_proba returns a dict per task",
    "check_methods_sample_order_invariance": "predict returns a DataFrame (a column per task)",
}


def expected_failed(estimator):
    return NOT_FOR_MULTI_TASK


# the tags (__sklearn_tags__) and expected_failed_checks came with scikit-learn 1.6
if tuple(int(part) for part in sklearn.__version__.split(".")[:2]) >= (1, 6):

    @parametrize_with_checks(
        [MultiTaskEstimator(epochs=1, trunk=(8,), head=(4,), batch_size=16)],
        expected_failed_checks=expected_failed,
        xfail_strict=True,  # a listed check that starts passing must leave the list
    )
    def test_scikit_learn_checks(estimator, check):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # model selection on tiny data
            check(estimator)


def table(n: int = 160, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features a, b (numeric) and c (categorical); tasks: 'sign' (binary, ints, a quarter
    unlabelled), 'level' (regression) and 'colour' (multiclass, from c)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(["u", "v", "w"], n)}
    )
    Y = pd.DataFrame(
        {
            "sign": (X["a"] > 0).astype(int).astype(object),
            "level": 3 * X["b"] + 0.1 * rng.normal(size=n),
            "colour": X["c"].map({"u": "red", "v": "green", "w": "blue"}),
        }
    )
    Y.loc[Y.index % 4 == 0, "sign"] = np.nan
    return X, Y


def test_fit_predict_score_on_data_frames():
    X, Y = table()
    model = MultiTaskEstimator(epochs=40, lr=1e-2, **SMALL).fit(X, Y)
    assert model.task_types_ == {"sign": "binary", "level": "regression", "colour": "multiclass"}
    predicted = model.predict(X)
    assert list(predicted.columns) == ["sign", "level", "colour"]
    assert set(predicted["sign"]) <= {0, 1}  # the labels Y held, ints
    assert set(predicted["colour"]) <= {"red", "green", "blue"}
    labelled = Y["sign"].notna()
    sign = accuracy_score(Y["sign"][labelled].astype(int), predicted["sign"][labelled])
    level = r2_score(Y["level"], predicted["level"])
    colour = accuracy_score(Y["colour"], predicted["colour"])
    assert sign > 0.9 and level > 0.8 and colour == 1.0  # it learnt each task
    assert model.score(X, Y) == pytest.approx((sign + level + colour) / 3)


def test_predict_keeps_the_index_and_probabilities_match_the_classes():
    X, Y = table()
    X.index = Y.index = X.index + 1000
    model = MultiTaskEstimator(epochs=3, **SMALL).fit(X, Y)
    predicted = model.predict(X)
    assert predicted.index.equals(X.index)
    proba = model.predict_proba(X)
    assert set(proba) == {"sign", "colour"}  # no probabilities for a regression task
    for task, values in proba.items():
        assert values.shape == (len(X), len(model.classes_[task]))
        np.testing.assert_allclose(values.sum(1), 1.0, rtol=1e-5)
    best = model.classes_["colour"][proba["colour"].argmax(1)]
    assert (best == predicted["colour"].to_numpy()).all()
    sign = model.classes_["sign"][(proba["sign"][:, 1] >= 0.5).astype(int)]
    assert (sign == predicted["sign"].to_numpy()).all()


def test_outputs_survive_pickling_refitting_and_row_by_row_prediction():
    X, Y = table(60)
    model = MultiTaskEstimator(epochs=2, **SMALL).fit(X, Y)
    predicted, proba = model.predict(X), model.predict_proba(X)
    copy = pickle.loads(pickle.dumps(model))
    pd.testing.assert_frame_equal(copy.predict(X), predicted)
    refit = MultiTaskEstimator(epochs=2, **SMALL).fit(X, Y)
    pd.testing.assert_frame_equal(refit.predict(X), predicted)
    for row in (0, 7, 59):
        one = model.predict_proba(X.iloc[[row]])
        for task in proba:
            np.testing.assert_allclose(one[task][0], proba[task][row], rtol=1e-5, atol=1e-6)
    shuffled = X.sample(frac=1.0, random_state=1)
    pd.testing.assert_frame_equal(model.predict(shuffled), predicted.loc[shuffled.index])
    other = MultiTaskEstimator(epochs=2, random_state=1, **SMALL).fit(X, Y)
    assert not np.allclose(other.predict(X)["level"], predicted["level"])


def test_score_ignores_missing_labels_and_tasks_without_any():
    X, Y = table()
    model = MultiTaskEstimator(epochs=3, **SMALL).fit(X, Y)
    predicted = model.predict(X)
    labelled = Y["sign"].notna()
    sign = accuracy_score(Y["sign"][labelled].astype(int), predicted["sign"][labelled])
    level = r2_score(Y["level"], predicted["level"])
    colour = accuracy_score(Y["colour"], predicted["colour"])
    assert model.score(X, Y) == pytest.approx((sign + level + colour) / 3)
    Y["colour"] = np.nan
    with pytest.warns(UserWarning, match="no label for task.s. colour"):
        assert model.score(X, Y) == pytest.approx((sign + level) / 2)


def test_declared_tasks_override_inference():
    X, Y = table()
    model = MultiTaskEstimator(
        tasks={"sign": "binary", "level": "regression", "colour": "multiclass"}, epochs=1, **SMALL
    )
    assert model.fit(X, Y).task_types_["sign"] == "binary"
    Y["count"] = np.arange(len(Y)) % 3
    model = MultiTaskEstimator(
        tasks={
            "sign": "binary",
            "level": "regression",
            "colour": "multiclass",
            "count": "regression",
        },
        epochs=1,
        **SMALL,
    ).fit(X, Y)
    assert model.task_types_["count"] == "regression"  # inference would say multiclass
    assert model.predict(X)["count"].dtype == np.float32


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([0, 1, 1, np.nan], "binary"),
        ([0.25, 0.75, 0.25], "binary"),
        (["a", "b", "c", None], "multiclass"),
        ([1, 2, 3, 4, 2], "multiclass"),
        ([1.0, 2.0, 3.0, np.nan], "multiclass"),
        ([0.5, 1.5, 2.5], "regression"),
        (list(range(21)), "regression"),
        (list(range(20)), "multiclass"),
        ([True, False, True], "binary"),
    ],
)
def test_task_type_inference(values, kind):
    assert infer_task_type(pd.Series(values)) == kind


def test_arrays_are_named_by_position():
    X, Y = table(80)
    model = MultiTaskEstimator(epochs=2, **SMALL).fit(
        X[["a", "b"]].to_numpy(), Y["level"].to_numpy()
    )
    assert model.n_features_in_ == 2 and not hasattr(model, "feature_names_in_")
    assert list(model.predict(X[["a", "b"]].to_numpy()).columns) == ["y0"]
    assert model.score(X[["a", "b"]].to_numpy(), Y["level"].to_numpy()) == pytest.approx(
        r2_score(Y["level"], model.predict(X[["a", "b"]].to_numpy())["y0"])
    )
    mixed = np.column_stack([X["a"].to_numpy(), X["c"].to_numpy()]).astype(object)
    model = MultiTaskEstimator(epochs=1, **SMALL).fit(mixed, Y[["sign"]])
    assert model.preprocessor_.numeric == ["x0"] and model.preprocessor_.categorical == ["x1"]


def test_pipeline_after_a_column_transformer():
    X, Y = table()
    prepare = ColumnTransformer(
        [("num", StandardScaler(), ["a", "b"]), ("cat", OneHotEncoder(sparse_output=False), ["c"])]
    )
    pipeline = Pipeline(
        [("prepare", prepare), ("model", MultiTaskEstimator(epochs=40, lr=1e-2, **SMALL))]
    )
    pipeline.fit(X, Y)
    assert pipeline.named_steps["model"].n_features_in_ == 5
    assert list(pipeline.predict(X).columns) == ["sign", "level", "colour"]
    assert pipeline.score(X, Y) > 0.85
    pipeline.set_output(transform="pandas")  # named columns reach the estimator
    pipeline.fit(X, Y)
    assert list(pipeline.named_steps["model"].feature_names_in_) == [
        "num__a", "num__b", "cat__c_u", "cat__c_v", "cat__c_w",
    ]  # fmt: skip
    assert pipeline.score(X, Y) > 0.85


def test_cross_validate():
    X, Y = table()
    model = MultiTaskEstimator(epochs=3, **SMALL)
    folds = KFold(3)
    scores = cross_validate(model, X, Y, cv=folds, return_estimator=True)
    assert len(scores["test_score"]) == 3 and np.isfinite(scores["test_score"]).all()
    for i, (_, test) in enumerate(folds.split(X)):  # each fold's model scored on its own rows
        fitted = scores["estimator"][i]
        assert scores["test_score"][i] == pytest.approx(fitted.score(X.iloc[test], Y.iloc[test]))
    assert not hasattr(model, "model_")  # cross_validate fitted clones


def test_grid_search_with_the_default_score_and_a_custom_scorer():
    X, Y = table()

    def colour_accuracy(estimator, X, Y):
        return accuracy_score(Y["colour"], estimator.predict(X)["colour"])

    for scoring in (None, colour_accuracy):
        search = GridSearchCV(
            MultiTaskEstimator(epochs=10, **SMALL),
            {"lr": [1e-6, 3e-2]},
            cv=KFold(2),
            scoring=scoring,
        ).fit(X, Y)
        assert search.best_params_ == {"lr": 3e-2}  # a learning rate of 1e-6 learns nothing
        assert search.best_estimator_.lr == 3e-2
        assert list(search.predict(X).columns) == ["sign", "level", "colour"]


# -- bad input ----------------------------------------------------------------------------


def test_a_y_column_without_any_label_is_named():
    X, Y = table(40)
    Y["empty"] = np.nan
    with pytest.raises(ValueError, match="Y column 'empty' has no label at all") as caught:
        MultiTaskEstimator(epochs=1, **SMALL).fit(X, Y)
    assert isinstance(caught.value, DataError)


def test_a_refit_with_other_task_columns_is_a_new_fit():
    X, Y = table(60)
    model = MultiTaskEstimator(epochs=1, **SMALL).fit(X, Y[["sign", "level"]])
    model.fit(X, Y[["colour"]])
    assert model.task_names_ == ["colour"] and list(model.predict(X).columns) == ["colour"]
    assert set(model.predict_proba(X)) == {"colour"}


def test_scoring_on_other_task_columns_names_them():
    X, Y = table(60)
    model = MultiTaskEstimator(epochs=1, **SMALL).fit(X, Y[["sign", "level"]])
    message = (
        "Y has columns ['sign', 'colour'], but the estimator was fitted on tasks "
        "['sign', 'level']; missing: 'level'; not expected: 'colour'"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        model.score(X, Y[["sign", "colour"]])


def test_a_refit_on_columns_the_tasks_parameter_does_not_name_is_an_error():
    X, Y = table(60)
    model = MultiTaskEstimator(tasks={"sign": "binary", "level": "regression"}, epochs=1, **SMALL)
    model.fit(X, Y[["sign", "level"]])
    with pytest.raises(ValueError, match="missing: 'level'; not expected: 'colour'"):
        model.fit(X, Y[["sign", "colour"]])
    assert not hasattr(model, "model_")  # the failed refit left no model of the first fit
    assert not hasattr(model, "n_features_in_") and not hasattr(model, "task_names_")
    with pytest.raises(NotFittedError):
        model.predict(X)


def test_x_with_other_columns_than_in_fit_is_named():
    X, Y = table(60)
    model = MultiTaskEstimator(epochs=1, **SMALL).fit(X, Y)
    with pytest.raises(ValueError, match="missing: 'b'; not expected: 'd'"):
        model.predict(X.rename(columns={"b": "d"}))
    with pytest.raises(ValueError, match="X has 2 features, but MultiTaskEstimator is expecting 3"):
        model.predict(X[["a", "b"]].to_numpy())
    reordered = X[["c", "b", "a"]]
    pd.testing.assert_frame_equal(model.predict(reordered), model.predict(X))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"epochs": 0}, r"MultiTaskEstimator: epochs \(training.epochs\): .* 1"),
        ({"balancer": "famoo"}, r"balancer \(balancer.name\): unknown balancer .famoo."),
        ({"arch": "hardd"}, r"arch \(model.arch\): unknown architecture .hardd."),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"tasks": {"sign": "multilabel"}}, "'sign' has type 'multilabel'"),
    ],
)
def test_bad_parameters_are_named_at_fit(params, message):
    X, Y = table(40)
    model = MultiTaskEstimator(**{**SMALL, **params})
    with pytest.raises(ValueError, match=message) as caught:
        model.fit(X, Y[["sign"]])
    assert isinstance(caught.value, ConfigError)
    assert model.get_params()[next(iter(params))] == params[next(iter(params))]  # unchanged


def test_rows_of_x_and_y_must_match():
    X, Y = table(40)
    with pytest.raises(ValueError, match="X has 40 rows but Y has 39"):
        MultiTaskEstimator(epochs=1, **SMALL).fit(X, Y.iloc[1:])


def test_x_and_y_with_different_indexes_are_not_paired_silently():
    X, Y = table(40)
    with pytest.raises(ValueError, match=r"different row indexes \(position 0: 0 in X, 39 in Y\)"):
        MultiTaskEstimator(epochs=1, **SMALL).fit(X, Y.iloc[::-1])
    model = MultiTaskEstimator(epochs=1, **SMALL).fit(X, Y.loc[X.index])
    with pytest.raises(ValueError, match="different row indexes"):
        model.score(X, Y.iloc[::-1])
    model.fit(X.to_numpy(), Y.iloc[::-1])  # an array has no index: paired by position
