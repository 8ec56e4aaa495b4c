from gateway.cli import main

# The guard matters: validation workers are spawned, and a spawned child imports the
# parent's main module under another name.
if __name__ == "__main__":
    main()
