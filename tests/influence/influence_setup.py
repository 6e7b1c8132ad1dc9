"""Helpers of the influence tests: the L2 logistic regression, fitted exactly by Newton."""

import jax
import jax.numpy as jnp
import optax

import valuation as va

L2 = 5.0  # strong enough that leave-one-out changes stay in the linear regime


def unbatch(params):
    return jax.tree_util.tree_map(lambda a: a[0], params)


def newton(train, weights, init=None, steps=30):
    return va.fit_logistic_newton(
        jnp.asarray(train.x),
        jnp.asarray(train.y),
        jnp.asarray(weights, jnp.float32),
        n_classes=train.n_classes,
        l2=L2,
        steps=steps,
        init=init,
    )


def mean_valid_loss(model, params, valid):
    logits = model.apply(params, jnp.asarray(valid.x))
    return jnp.mean(
        optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(valid.y))
    )
