"""The commented claim template `provenance claim template` writes."""

TEMPLATE = '''# A platform claim for `provenance claim verify`. Relative paths resolve against this file's folder
# and may not leave it. Unknown keys are errors, so a typo never passes silently.

[model]
path = "release/"                # checkpoint directory or file the claim is about
label = "Vendor-MoE-72B"         # optional: the name used in reports

[claim]
origin = "from-scratch"          # or "derived-from"
parent = ""                      # the named parent when origin = "derived-from" (a suspect's label or path)
vendor = "Huawei"                # the claimed platform
chip = "Ascend 910B"
framework = "MindSpore"
dtype = "bf16"                   # fp32, tf32, hf32, bf16 or fp16: the training precision claimed

# Models the claim says it is NOT derived from (checkpoints or fingerprint files); repeat the block per suspect.
# [[suspects]]
# path = "qwen2.5-14b.fp.safetensors"
# label = "Qwen2.5-14B"          # optional

# Optional: outputs the vendor published as computed on the claimed platform.
# [reference_outputs]
# file = "ref.safetensors"       # tensors input_ids [batch, seq] and logits [batch, seq, vocab] and/or hidden_states
# mode = "bf16"                  # the precision they were computed in

# Optional: a training segment to replay (Proof-of-Learning style).
# [segment]
# start = "ckpt-t/"                            # HF-layout checkpoint directory at step t
# optimizer = "ckpt-t/optimizer.safetensors"   # <param>.exp_avg and <param>.exp_avg_sq (AdamW), metadata "step"
# batches = "batches.safetensors"              # input_ids [k, batch, seq]: the data of the k steps, in order
# recipe = "recipe.json"                       # optimizer "adamw", lr, betas, eps, weight_decay, grad_clip, steps,
#                                              # loss "causal-lm", optional no_decay (parameter-name substrings)
# end = "ckpt-t-plus-k/"                       # the claimed checkpoint at step t+k
'''
