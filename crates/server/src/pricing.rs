//! What a reply costs: tokens at the model's price per million, plus a flat fee per reply.

use std::collections::HashMap;

use anyreply_core::Money;

use crate::llm::TokenUsage;

/// Price of one model, per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    pub input_per_mtok: Money,
    pub output_per_mtok: Money,
}

/// The price table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    /// Charged for every answered reply, on top of tokens.
    pub per_reply: Money,
    /// Models not in `per_model`.
    pub default_price: ModelPrice,
    pub per_model: HashMap<String, ModelPrice>,
}

impl Default for Pricing {
    fn default() -> Self {
        Self {
            per_reply: Money::ZERO,
            // gpt-4o-mini's list price, the default model's.
            default_price: ModelPrice {
                input_per_mtok: Money::from_subunits(15_000_000),
                output_per_mtok: Money::from_subunits(60_000_000),
            },
            per_model: HashMap::new(),
        }
    }
}

impl Pricing {
    fn price_of(&self, model: &str) -> ModelPrice {
        self.per_model
            .get(model)
            .copied()
            .unwrap_or(self.default_price)
    }

    /// What `usage` of `model` costs, rounded up to the sub-unit; the flat fee not included.
    pub fn tokens_cost(&self, model: &str, usage: TokenUsage) -> Money {
        let price = self.price_of(model);
        tokens_cost(usage.prompt_tokens, price.input_per_mtok)
            .saturating_add(tokens_cost(usage.completion_tokens, price.output_per_mtok))
    }

    /// The cost of a reply that used `usage` of one model: tokens plus the flat fee.
    pub fn cost(&self, model: &str, usage: TokenUsage) -> Money {
        self.per_reply
            .saturating_add(self.tokens_cost(model, usage))
    }

    /// The most a reply may cost, reserved from the balance before the model is called:
    /// `model_calls` calls of `max_usage` each, at the dearest of `models`, plus the flat fee.
    pub fn hold(&self, models: &[&str], model_calls: u32, max_usage: TokenUsage) -> Money {
        let dearest = models
            .iter()
            .map(|m| self.tokens_cost(m, max_usage))
            .max()
            .unwrap_or_default();
        let calls = Money::from_subunits(dearest.subunits().saturating_mul(i64::from(model_calls)));
        self.per_reply.saturating_add(calls)
    }
}

fn tokens_cost(tokens: u32, per_mtok: Money) -> Money {
    let subunits = (i128::from(tokens) * i128::from(per_mtok.subunits()) + 999_999) / 1_000_000;
    Money::from_subunits(i64::try_from(subunits).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_adds_tokens_and_the_flat_fee() {
        let pricing = Pricing {
            per_reply: "0.01".parse().unwrap(),
            default_price: ModelPrice {
                input_per_mtok: "1".parse().unwrap(),
                output_per_mtok: "2".parse().unwrap(),
            },
            per_model: HashMap::from([(
                "big".to_owned(),
                ModelPrice {
                    input_per_mtok: "10".parse().unwrap(),
                    output_per_mtok: "20".parse().unwrap(),
                },
            )]),
        };
        let usage = TokenUsage {
            prompt_tokens: 1_000,
            completion_tokens: 500,
        };
        // 0.01 + 1000 * 1/1e6 + 500 * 2/1e6 = 0.012
        assert_eq!(pricing.cost("small", usage), "0.012".parse().unwrap());
        assert_eq!(pricing.cost("big", usage), "0.03".parse().unwrap());
        // One token at a price that does not divide evenly rounds up.
        let odd = Pricing {
            per_reply: Money::ZERO,
            default_price: ModelPrice {
                input_per_mtok: Money::from_subunits(1),
                output_per_mtok: Money::ZERO,
            },
            per_model: HashMap::new(),
        };
        assert_eq!(
            odd.cost(
                "m",
                TokenUsage {
                    prompt_tokens: 1,
                    completion_tokens: 0
                }
            )
            .subunits(),
            1
        );
    }
}
