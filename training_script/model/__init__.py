"""labelsieve's Viam custom training script: `python3 -m model.training --dataset_file=... --model_output_directory=...`."""
