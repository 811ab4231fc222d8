mod recorder;
