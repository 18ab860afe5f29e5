//! The glue between models (`gleaner_embed`) and methods (`gleaner_selectors`): the model
//! stages' columns and their cache (`features`), AttentionInfluence's head detection, Quad's
//! proxy and probe scorer. (The proxy training that `loss_trajectory` and `gleaner evaluate`
//! share is `crate::training`, which the settings depend on.)

pub mod attention_influence;
pub mod features;
pub mod quad;
