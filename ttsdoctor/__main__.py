from ttsdoctor.cli import main_exit

main_exit()
